"""Colormap inversion in vectorised NumPy: the baseline (docs/format.md, Colormaps).

Same formulas, order of operations, work dtypes and tie rule as
``vbkernels.reference.colormap`` (whose docstring is the contract), so uint8 images decode
bit-identically to the torch reference: with integer colours every quantity before the two
divisions is an exact integer in float64, and each later step is one IEEE operation.
"""

from __future__ import annotations

import numpy as np

from ._common import CHUNK, iter_chunks, nan_pixels, to_units

# Pixels x segments per block: a few float64 temporaries of 2 MB each stay in cache.
PAIRS_PER_BLOCK = 1 << 18


def colormap_work_dtype(dtype: np.dtype) -> type:
    """float64 for uint8 (exact integer arithmetic) and float64 images, else float32."""
    return np.float64 if dtype in (np.uint8, np.float64) else np.float32


def _segments(pc, a, d):
    """``(d2, s)`` of the pixels ``pc`` (3, P) against the segments from ``a`` (S, 3, 1)
    along ``d`` (S, 3, 1), each (S, P): the three cases of the contract."""
    e = [pc[c] - a[:, c] for c in range(3)]
    length2 = (d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1]) + d[:, 2] * d[:, 2]
    dot = (e[0] * d[:, 0] + e[1] * d[:, 1]) + e[2] * d[:, 2]
    ee = (e[0] * e[0] + e[1] * e[1]) + e[2] * e[2]
    before, after = dot <= 0, dot >= length2
    safe_length2 = np.where(length2 > 0, length2, 1)
    inner = np.maximum(ee * length2 - dot * dot, 0) / safe_length2
    after_d2 = np.maximum((ee - 2 * dot) + length2, 0)
    d2 = np.where(before, ee, np.where(after, after_d2, inner))
    s = np.where(before, 0, np.where(after, 1, dot / safe_length2)).astype(pc.dtype)
    return d2, s


def nearest_on_polyline(p, colours, positions):
    """``(t, dist2)`` of (P, 3) pixels on the polyline, in p's dtype. Blocks of
    (segments, pixels), pixels innermost; ``argmin`` takes the first minimum and a later
    block must be strictly better, so ties go to the lowest segment."""
    m = p.shape[0]
    colours = colours.astype(p.dtype)
    positions = positions.astype(p.dtype)
    pc = np.ascontiguousarray(p.T)
    cols = np.arange(m)
    best_d2 = np.full((m,), np.inf, dtype=p.dtype)
    best_t = np.zeros((m,), dtype=p.dtype)
    segments = colours.shape[0] - 1
    block = max(1, PAIRS_PER_BLOCK // max(m, 1))
    for j0 in range(0, segments, block):
        j1 = min(segments, j0 + block)
        a = colours[j0:j1, :, None]
        d = (colours[j0 + 1:j1 + 1] - colours[j0:j1])[:, :, None]
        d2, s = _segments(pc, a, d)
        block_j = np.argmin(d2, axis=0)
        block_d2 = d2[block_j, cols]
        start = positions[j0:j1][block_j]
        span = positions[j0 + 1:j1 + 1][block_j] - start
        better = block_d2 < best_d2
        best_d2 = np.where(better, block_d2, best_d2)
        best_t = np.where(better, start + s[block_j, cols] * span, best_t)
    return best_t, best_d2


def decode_colormap(rgb, colours, positions, t_out, distance_out, max_distance):
    wdt = colormap_work_dtype(rgb.dtype)
    for imgs, rows in iter_chunks(rgb.shape, CHUNK):
        p = to_units(rgb[imgs, rows]).astype(wdt)
        shape = p.shape[:-1]
        t, d2 = nearest_on_polyline(p.reshape(-1, 3), colours, positions)
        t, d2 = t.reshape(shape), d2.reshape(shape)
        nan = nan_pixels(p)
        distance = np.sqrt(d2).astype(np.float32)
        distance[nan] = np.nan
        drop = nan if max_distance is None else nan | (distance > np.float32(max_distance))
        t = t.astype(t_out.dtype)
        t[drop] = np.nan
        t_out[imgs, rows] = t
        if distance_out is not None:
            distance_out[imgs, rows] = distance
