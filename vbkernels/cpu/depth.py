"""Depth kernel ops of the ``cpu`` backend (signatures in ``vbkernels._dispatch``)."""

from __future__ import annotations

import torch

from ._lib import call, code, ptr, shape3, strides


def hilbert_project(rgb: torch.Tensor, t: torch.Tensor) -> None:
    if t.numel() == 0:
        return
    call("vbk_hilbert_project", {"rgb": rgb, "t": t},
         ptr(rgb), code(rgb), strides(rgb), shape3(rgb), ptr(t), code(t), strides(t))


def decode_depth(rgb, depth, distance, lam: float, c: float, max_depth) -> None:
    if depth.numel() == 0:
        return
    call("vbk_decode_depth", {"rgb": rgb, "depth": depth},
         ptr(rgb), code(rgb), strides(rgb), shape3(rgb), ptr(depth), code(depth),
         strides(depth), ptr(distance), strides(distance), -lam * c, lam + 1.0,
         int(max_depth is not None), 0.0 if max_depth is None else float(max_depth))


def hilbert_walk(t: torch.Tensor, rgb: torch.Tensor) -> None:
    if t.numel() == 0:
        return
    call("vbk_hilbert_walk", {"t": t, "rgb": rgb},
         ptr(t), code(t), strides(t), shape3(t), ptr(rgb), code(rgb), strides(rgb))


def encode_depth(depth: torch.Tensor, rgb: torch.Tensor, lam: float, c: float) -> None:
    if depth.numel() == 0:
        return
    call("vbk_encode_depth", {"depth": depth, "rgb": rgb},
         ptr(depth), code(depth), strides(depth), shape3(depth), ptr(rgb), code(rgb),
         strides(rgb), -lam * c, lam + 1.0)
