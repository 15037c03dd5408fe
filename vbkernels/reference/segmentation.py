"""Nearest-palette labels and palette painting in plain torch (docs/format.md, Segmentation)."""

from __future__ import annotations

import torch

from ._common import chunk_pixels, iter_chunks, nan_pixels, to_units

# Upper bound on pixels x palette entries held at once: 2^22 float32 distances (16 MB) plus
# a few temporaries of the same size, whatever K is.
PAIRS_PER_BLOCK = 1 << 22


def nearest_palette(p: torch.Tensor, palette: torch.Tensor):
    """Index of and squared distance to the nearest palette colour for (M, 3) pixels.

    Distances are ``(dr^2 + dg^2) + db^2`` in the working dtype, exact for integer values.
    ``argmin`` returns the first minimum inside a block and blocks are merged with a strict
    ``<``, so ties go to the lowest palette index.
    """
    m = p.shape[0]
    best_d2 = torch.full((m,), float("inf"), dtype=p.dtype, device=p.device)
    best_i = torch.zeros((m,), dtype=torch.int64, device=p.device)
    block = max(1, PAIRS_PER_BLOCK // max(m, 1))
    for k0 in range(0, palette.shape[0], block):
        colours = palette[k0:k0 + block].to(p.dtype)
        d2 = (p[:, 0:1] - colours[:, 0]) ** 2 + (p[:, 1:2] - colours[:, 1]) ** 2
        d2 = d2 + (p[:, 2:3] - colours[:, 2]) ** 2
        block_d2, block_i = d2.min(dim=1)
        better = block_d2 < best_d2
        best_d2 = torch.where(better, block_d2, best_d2)
        best_i = torch.where(better, block_i + k0, best_i)
    return best_i, best_d2


def decode_segmentation(rgb, palette, labels_out, distance_out, max_dist2, ignore_index) -> None:
    for imgs, rows in iter_chunks(rgb.shape, chunk_pixels(rgb.device)):
        p = to_units(rgb[imgs, rows])
        shape = p.shape[:-1]
        index, d2 = nearest_palette(p.reshape(-1, 3), palette)
        index, d2 = index.reshape(shape), d2.reshape(shape)
        nan = nan_pixels(p)
        drop = nan if max_dist2 is None else nan | (d2 > max_dist2)
        labels_out[imgs, rows] = index.masked_fill(drop, ignore_index).to(labels_out.dtype)
        if distance_out is not None:
            distance_out[imgs, rows] = torch.sqrt(d2).masked_fill(nan, float("nan"))


def encode_segmentation(labels, palette, rgb_out, ignore_color) -> None:
    k = palette.shape[0]
    for imgs, rows in iter_chunks(labels.shape + (1,), chunk_pixels(labels.device)):
        lab = labels[imgs, rows].to(torch.int64)
        valid = (lab >= 0) & (lab < k)
        colours = palette[torch.where(valid, lab, 0)]
        rgb_out[imgs, rows] = torch.where(valid.unsqueeze(-1), colours, ignore_color)
