"""Normal kernel ops of the ``cuda`` backend (signatures in ``vbkernels._dispatch``)."""

from __future__ import annotations

import numpy as np
import torch

from ._lib import launch, packed_u8_path, ptr, shape3, strides, suffix


def decode_normals(rgb, normals, norm, flip_yz: bool, eps: float) -> None:
    if packed_u8_path(rgb, normals, norm):  # 4 pixels per thread, 32-bit loads
        pixels = norm.numel() if norm is not None else normals.numel() // 3
        launch("normals", "decode_normals_u8x4_f32", rgb.device, -(-pixels // 4),
               [ptr(rgb), np.int64(pixels), ptr(normals), ptr(norm), np.int32(bool(flip_yz)),
                np.float64(eps)])
        return
    launch("normals", f"decode_normals_{suffix(rgb)}_{suffix(normals)}", rgb.device,
           normals.shape[0] * normals.shape[1] * normals.shape[2],
           [ptr(rgb), *strides(rgb, 4), *shape3(rgb), ptr(normals), *strides(normals, 4),
            ptr(norm), *strides(norm, 3), np.int32(bool(flip_yz)), np.float64(eps)])


def encode_normals(normals: torch.Tensor, rgb: torch.Tensor, flip_yz: bool) -> None:
    launch("normals", f"encode_normals_{suffix(normals)}_{suffix(rgb)}", normals.device,
           rgb.shape[0] * rgb.shape[1] * rgb.shape[2],
           [ptr(normals), *strides(normals, 4), *shape3(normals), ptr(rgb), *strides(rgb, 4),
            np.int32(bool(flip_yz))])
