"""Depth kernel ops of the ``cuda`` backend (signatures in ``vbkernels._dispatch``)."""

from __future__ import annotations

import numpy as np
import torch

from ..cpu.depth import walk_table
from ._lib import launch, packed_u8_path, ptr, shape3, strides, suffix


def _walk_table_u8x4(rgb, out, distance, table) -> None:
    """The uint8 fast path: 4 pixels per thread, gathering from ``table`` in shared memory."""
    pixels = out.numel()
    launch("depth", "walk_table_u8x4_f32", rgb.device, -(-pixels // 4),
           [ptr(rgb), np.int64(pixels), ptr(table), ptr(out), ptr(distance)])


def hilbert_project(rgb: torch.Tensor, t: torch.Tensor) -> None:
    if packed_u8_path(rgb, t):
        _walk_table_u8x4(rgb, t, None, walk_table("t", device=rgb.device))
        return
    launch("depth", f"hilbert_project_{suffix(rgb)}_{suffix(t)}", rgb.device, t.numel(),
           [ptr(rgb), *strides(rgb, 4), *shape3(rgb), ptr(t), *strides(t, 3)])


def decode_depth(rgb, depth, distance, lam: float, c: float, max_depth) -> None:
    if packed_u8_path(rgb, depth, distance):
        table = walk_table("depth", lam, c, max_depth, device=rgb.device)
        _walk_table_u8x4(rgb, depth, distance, table)
        return
    launch("depth", f"decode_depth_{suffix(rgb)}_{suffix(depth)}", rgb.device, depth.numel(),
           [ptr(rgb), *strides(rgb, 4), *shape3(rgb), ptr(depth), *strides(depth, 3),
            ptr(distance), *strides(distance, 3), np.float64(-lam * c), np.float64(lam + 1.0),
            np.int32(max_depth is not None),
            np.float64(0.0 if max_depth is None else max_depth)])


def hilbert_walk(t: torch.Tensor, rgb: torch.Tensor) -> None:
    launch("depth", f"hilbert_walk_{suffix(t)}_{suffix(rgb)}", t.device, t.numel(),
           [ptr(t), *strides(t, 3), *shape3(t), ptr(rgb), *strides(rgb, 4)])


def encode_depth(depth: torch.Tensor, rgb: torch.Tensor, lam: float, c: float) -> None:
    launch("depth", f"encode_depth_{suffix(depth)}_{suffix(rgb)}", depth.device, depth.numel(),
           [ptr(depth), *strides(depth, 3), *shape3(depth), ptr(rgb), *strides(rgb, 4),
            np.float64(-lam * c), np.float64(lam + 1.0)])
