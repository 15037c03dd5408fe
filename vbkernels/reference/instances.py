"""Per-pixel steps of instance palette clustering in plain torch (CPU and CUDA).

``vbkernels.instances`` finds each image's colours on a colour histogram and then labels
the pixels; the two steps that touch every pixel live here (and, as kernels, in
``vbkernels/triton/instances.py``):

``colour_histogram(rgb, flat_tolerance_q, count_all, count_flat, sum_flat)``
    rgb: (N, H, W, 3) view, any strides, uint8 or float. Adds into int64 accumulators:
    count_all (N, BINS) every non-NaN pixel; count_flat (N, BINS) "flat" pixels only;
    sum_flat (N, BINS, 3) the fixed-point colour sum of the flat pixels.
``assign_pixels(rgb, centres_q, num_centres, max_dist2_q, first_label, labels, counts)``
    centres_q: (N, K, 3) int32 fixed-point colours, image n using its first
    ``num_centres[n]`` rows; labels: (N, H, W) int32 view written with
    ``first_label + index`` of the nearest centre (ties to the lowest index), or -1 for a
    NaN pixel, a pixel farther than ``max_dist2_q`` from every centre, or K == 0.
    counts: (N, K + 1) int64 accumulator: slot 0 gains the -1 pixels, slot j + 1 the pixels
    of centre j (the kernel counts as it labels, saving a second pass over the labels).

Everything is integer arithmetic in fixed point (``STEPS`` per 0..255 unit), so every
backend and device produces the same histogram and the same labels, bit for bit.
"""

from __future__ import annotations

import torch

from ._common import chunk_pixels, iter_chunks

# Fixed point: a colour value v (0..255 units) is q = round(16 v) in 0..4080. uint8 values
# are exact; float values are rounded to 1/16 unit, far below any colour difference that
# matters here, and integer squared distances (< 3 * 4080^2 < 2^31) compare exactly.
STEPS = 16
Q_MAX = 255 * STEPS
# 5 bits per channel: a bin spans 8 units (128 fixed-point steps); 32^3 bins per image.
BIN_SHIFT = 7
BINS_PER_CHANNEL = 32
BINS = BINS_PER_CHANNEL ** 3
NO_CENTRE = -1


def quantize(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 3) image -> (fixed-point int32 colours, valid mask); NaN pixels are invalid.

    Floats go through float32 as ``floor(clamp(x, 0, 1) * 255 * 16 + 0.5)``: the Triton
    kernel does the same operations in the same order, so both round identically.
    """
    if rgb.dtype == torch.uint8:
        q = rgb.to(torch.int32) * STEPS
        valid = torch.ones(rgb.shape[:-1], dtype=torch.bool, device=rgb.device)
        return q, valid
    x = rgb.to(torch.float32)
    valid = ~torch.isnan(x).any(dim=-1)
    x = torch.nan_to_num(x, nan=0.0).clamp(0.0, 1.0)
    q = torch.floor(x * 255.0 * float(STEPS) + 0.5).to(torch.int32)
    return q, valid


def bin_index(q: torch.Tensor) -> torch.Tensor:
    """Histogram bin (0..BINS-1) of fixed-point colours (..., 3)."""
    b = q >> BIN_SHIFT
    return (b[..., 0] * BINS_PER_CHANNEL + b[..., 1]) * BINS_PER_CHANNEL + b[..., 2]


def _flat(q: torch.Tensor, valid: torch.Tensor, rows: int, tolerance: int) -> torch.Tensor:
    """Flat pixels among the first ``rows`` rows of a (n, rows[+1], W, 3) block.

    A pixel is flat when its right and lower neighbours (where they exist) are valid and
    within ``tolerance`` fixed-point steps in every channel: the interior of a painted
    region, as opposed to an anti-aliased edge whose colour is a mixture of two instances.
    """
    flat = valid.clone()
    close_right = (q[:, :, 1:] - q[:, :, :-1]).abs().amax(dim=-1) <= tolerance
    flat[:, :, :-1] &= close_right & valid[:, :, 1:]
    close_down = (q[:, 1:] - q[:, :-1]).abs().amax(dim=-1) <= tolerance
    flat[:, :-1] &= close_down & valid[:, 1:]
    return flat[:, :rows]


def colour_histogram(rgb, flat_tolerance_q, count_all, count_flat, sum_flat) -> None:
    height = rgb.shape[1]
    for imgs, rows in iter_chunks(rgb.shape, chunk_pixels(rgb.device)):
        # One extra row below the chunk decides whether its last row is flat.
        below = slice(rows.start, min(height, rows.stop + 1))
        q_ext, valid_ext = quantize(rgb[imgs, below])
        n_rows = rows.stop - rows.start
        flat = _flat(q_ext, valid_ext, n_rows, flat_tolerance_q)
        q, valid = q_ext[:, :n_rows], valid_ext[:, :n_rows]
        image = torch.arange(imgs.start, imgs.stop, device=rgb.device).view(-1, 1, 1)
        index = (image * BINS + bin_index(q)).reshape(-1)
        # index_add_ of masks instead of boolean indexing: no host sync on CUDA.
        count_all.view(-1).index_add_(0, index, valid.reshape(-1).to(torch.int64))
        flat64 = flat.reshape(-1, 1).to(torch.int64)
        count_flat.view(-1).index_add_(0, index, flat64[:, 0])
        sum_flat.view(-1, 3).index_add_(0, index, q.reshape(-1, 3).to(torch.int64) * flat64)


def _nearest(q: torch.Tensor, centres: torch.Tensor, count: torch.Tensor):
    """Squared distance to and index of the nearest of each image's live centres.

    q: (n, P, 3) int32; centres: (n, K, 3) int32; count: (n,) live centres per image. One
    pass per centre over (n, P) int32 planes: no (P, K, 3) temporaries. A strict ``<`` keeps
    the first minimum, so ties go to the lowest index.
    """
    n, p, _ = q.shape
    never = torch.iinfo(torch.int32).max
    best_d2 = torch.full((n, p), never, dtype=torch.int32, device=q.device)
    best = torch.zeros((n, p), dtype=torch.int64, device=q.device)
    q_r, q_g, q_b = q.unbind(-1)
    for k in range(centres.shape[1]):
        colour = centres[:, k].unsqueeze(-1)
        d2 = (q_r - colour[:, 0]).square_()
        d2 += (q_g - colour[:, 1]).square_()
        d2 += (q_b - colour[:, 2]).square_()
        d2.masked_fill_((count <= k).view(-1, 1), never)
        better = d2 < best_d2
        best_d2 = torch.where(better, d2, best_d2)
        best.masked_fill_(better, k)
    return best_d2, best


def assign_pixels(rgb, centres_q, num_centres, max_dist2_q, first_label, labels,
                  counts) -> None:
    k = centres_q.shape[1]
    if k == 0:
        labels.fill_(NO_CENTRE)
        counts[:, 0] += labels.shape[1] * labels.shape[2]
        return
    for imgs, rows in iter_chunks(rgb.shape, chunk_pixels(rgb.device)):
        q, valid = quantize(rgb[imgs, rows])
        shape = q.shape[:-1]
        d2, index = _nearest(q.reshape(shape[0], -1, 3), centres_q[imgs], num_centres[imgs])
        keep = valid & (d2.view(shape) <= max_dist2_q) & (num_centres[imgs].view(-1, 1, 1) > 0)
        label = (index.view(shape) + first_label).to(torch.int32)
        labels[imgs, rows] = label.masked_fill(~keep, NO_CENTRE)
        slot = torch.where(keep, index.view(shape) + 1, 0).reshape(shape[0], -1)
        counts[imgs].scatter_add_(1, slot, torch.ones_like(slot))
