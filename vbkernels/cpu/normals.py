"""Normal kernel ops of the ``cpu`` backend (signatures in ``vbkernels._dispatch``)."""

from __future__ import annotations

import torch

from ._lib import call, code, ptr, shape3, strides


def decode_normals(rgb, normals, norm, flip_yz: bool, eps: float) -> None:
    if normals.numel() == 0:
        return
    call("vbk_decode_normals", {"rgb": rgb, "normals": normals},
         ptr(rgb), code(rgb), strides(rgb), shape3(rgb), ptr(normals), code(normals),
         strides(normals), ptr(norm), strides(norm), int(bool(flip_yz)), float(eps))


def encode_normals(normals: torch.Tensor, rgb: torch.Tensor, flip_yz: bool) -> None:
    if normals.numel() == 0:
        return
    call("vbk_encode_normals", {"normals": normals, "rgb": rgb},
         ptr(normals), code(normals), strides(normals), shape3(normals), ptr(rgb), code(rgb),
         strides(rgb), int(bool(flip_yz)))
