"""Nearest-palette labels and palette painting in vectorised NumPy (the baseline)."""

from __future__ import annotations

import numpy as np

from ._common import CHUNK, iter_chunks, nan_pixels, to_units

PAIRS_PER_BLOCK = 1 << 22


def nearest_palette(p, palette):
    """First-minimum index and squared distance over palette blocks; ties to lowest index."""
    m = p.shape[0]
    best_d2 = np.full((m,), np.inf, dtype=p.dtype)
    best_i = np.zeros((m,), dtype=np.int64)
    block = max(1, PAIRS_PER_BLOCK // max(m, 1))
    for k0 in range(0, palette.shape[0], block):
        colours = palette[k0:k0 + block].astype(p.dtype)
        d2 = (p[:, 0:1] - colours[:, 0]) ** 2 + (p[:, 1:2] - colours[:, 1]) ** 2
        d2 = d2 + (p[:, 2:3] - colours[:, 2]) ** 2
        block_i = np.argmin(d2, axis=1)
        block_d2 = np.take_along_axis(d2, block_i[:, None], axis=1)[:, 0]
        better = block_d2 < best_d2
        best_d2 = np.where(better, block_d2, best_d2)
        best_i = np.where(better, block_i + k0, best_i)
    return best_i, best_d2


def decode_segmentation(rgb, palette, labels_out, distance_out, max_dist2, ignore_index):
    for imgs, rows in iter_chunks(rgb.shape, CHUNK):
        p = to_units(rgb[imgs, rows])
        shape = p.shape[:-1]
        index, d2 = nearest_palette(p.reshape(-1, 3), palette)
        index, d2 = index.reshape(shape), d2.reshape(shape)
        nan = nan_pixels(p)
        drop = nan if max_dist2 is None else nan | (d2 > max_dist2)
        index[drop] = ignore_index
        labels_out[imgs, rows] = index
        if distance_out is not None:
            dist = np.sqrt(d2).astype(np.float32)
            dist[nan] = np.nan
            distance_out[imgs, rows] = dist


def encode_segmentation(labels, palette, rgb_out, ignore_color):
    k = palette.shape[0]
    for imgs, rows in iter_chunks(labels.shape + (1,), CHUNK):
        lab = labels[imgs, rows].astype(np.int64)
        valid = (lab >= 0) & (lab < k)
        colours = palette[np.where(valid, lab, 0)]
        rgb_out[imgs, rows] = np.where(valid[..., None], colours, ignore_color)
