"""Colormap inversion in plain torch: the nearest point on a colormap's polyline
(docs/format.md, Colormaps).

Kernel op contract (every backend):

``decode_colormap(rgb, colours, positions, t, distance, max_distance)``
    rgb: (N, H, W, 3) view, any image dtype; colours: (M, 3) float64, M >= 2, the polyline's
    vertices in 0..255 units (integer-valued: the bytes a painter writes); positions: (M,)
    float64, the normalised value of each vertex; t: (N, H, W) float32 (float64 for float64
    rgb); distance: (N, H, W) float32 or None; max_distance: a float32-representable float,
    or None.

For each pixel ``p`` (0..255 units) and each segment ``j`` from ``a = colours[j]`` to
``b = colours[j+1]``, with ``d = b - a``, ``e = p - a``, ``L = d.d``, ``dot = e.d``,
``ee = e.e`` (each a sum in channel order r, g, b):

- ``dot <= 0``: ``s = 0``, ``dist2 = ee`` (this also covers a zero-length segment);
- else ``dot >= L``: ``s = 1``, ``dist2 = max(ee - 2 dot + L, 0)`` (in float32 the sum can
  round below 0 near the end vertex; the clamp keeps its distance 0 rather than NaN);
- else ``s = dot / L``, ``dist2 = max(ee * L - dot * dot, 0) / L``.

The pixel takes the segment with the smallest ``dist2``, strict ``<`` over ascending ``j``
(ties to the lowest segment); ``t = positions[j] + s * (positions[j+1] - positions[j])``,
rounded to t's dtype. Work dtype: float64 for uint8 and float64 images (with integer
colours every quantity before the divisions is an exact integer, so every backend picks
the same segment and writes the same ``t``), float32 for the other float images.
``distance = float32(sqrt(dist2))``, correctly rounded. A NaN channel gives NaN ``t`` and
distance; a pixel whose float32 distance exceeds ``max_distance`` gets NaN ``t``.
"""

from __future__ import annotations

import torch

from ._common import chunk_pixels, iter_chunks, nan_pixels, to_units

# Pixels x segments per block: a few float64 temporaries of 2 MB each stay in cache.
PAIRS_PER_BLOCK = 1 << 18


def colormap_work_dtype(rgb_dtype: torch.dtype) -> torch.dtype:
    """float64 for uint8 (exact integer arithmetic) and float64 images, else float32."""
    return torch.float64 if rgb_dtype in (torch.uint8, torch.float64) else torch.float32


def nearest_on_polyline(p: torch.Tensor, colours: torch.Tensor, positions: torch.Tensor):
    """``(t, dist2)`` of (P, 3) pixels on the polyline, in p's dtype (the contract above).

    Works on (segments, pixels) blocks, pixels innermost so every elementwise op runs over
    contiguous memory.
    """
    m = p.shape[0]
    colours = colours.to(p.dtype)
    positions = positions.to(p.dtype)
    pc = p.t().contiguous()  # (3, P)
    best_d2 = torch.full((m,), float("inf"), dtype=p.dtype, device=p.device)
    best_t = torch.zeros((m,), dtype=p.dtype, device=p.device)
    segments = colours.shape[0] - 1
    block = max(1, PAIRS_PER_BLOCK // max(m, 1))
    for j0 in range(0, segments, block):
        j1 = min(segments, j0 + block)
        a, d = colours[j0:j1, :, None], (colours[j0 + 1:j1 + 1] - colours[j0:j1])[:, :, None]
        e = [pc[c] - a[:, c] for c in range(3)]  # (S, P) each
        length2 = (d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1]) + d[:, 2] * d[:, 2]  # (S, 1)
        dot = (e[0] * d[:, 0] + e[1] * d[:, 1]) + e[2] * d[:, 2]
        ee = (e[0] * e[0] + e[1] * e[1]) + e[2] * e[2]
        before, after = dot <= 0, dot >= length2
        safe_length2 = torch.where(length2 > 0, length2, torch.ones_like(length2))
        inner = (ee * length2 - dot * dot).clamp_min(0) / safe_length2
        after_d2 = (ee - 2 * dot + length2).clamp_min(0)
        d2 = torch.where(before, ee, torch.where(after, after_d2, inner))
        s = torch.where(before, torch.zeros_like(dot),
                        torch.where(after, torch.ones_like(dot), dot / safe_length2))
        block_d2, block_j = d2.min(dim=0)  # the first minimum: ties to the lowest segment
        s = s.gather(0, block_j[None])[0]
        start = positions[j0:j1][block_j]
        span = positions[j0 + 1:j1 + 1][block_j] - start
        better = block_d2 < best_d2
        best_d2 = torch.where(better, block_d2, best_d2)
        best_t = torch.where(better, start + s * span, best_t)
    return best_t, best_d2


def decode_colormap(rgb, colours, positions, t_out, distance_out, max_distance) -> None:
    wdt = colormap_work_dtype(rgb.dtype)
    for imgs, rows in iter_chunks(rgb.shape, chunk_pixels(rgb.device)):
        p = to_units(rgb[imgs, rows]).to(wdt)
        shape = p.shape[:-1]
        t, d2 = nearest_on_polyline(p.reshape(-1, 3), colours, positions)
        t, d2 = t.reshape(shape), d2.reshape(shape)
        nan = nan_pixels(p)
        # The root in float64, then rounded: torch's vectorised float32 sqrt on the CPU is
        # off by an ulp for some inputs, and a correctly rounded distance is what every
        # other backend (sqrt in C, CUDA, NumPy) writes.
        distance = torch.sqrt(d2.to(torch.float64)).to(torch.float32)
        distance = distance.masked_fill(nan, float("nan"))
        drop = nan if max_distance is None else nan | (distance > max_distance)
        t_out[imgs, rows] = t.to(t_out.dtype).masked_fill(drop, float("nan"))
        if distance_out is not None:
            distance_out[imgs, rows] = distance
