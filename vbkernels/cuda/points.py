"""Point kernel ops of the ``cuda`` backend (``csrc/points.cu``; contract in
``vbkernels/reference/points.py``)."""

from __future__ import annotations

import numpy as np
import torch

from ._lib import launch, ptr, shape3, strides, suffix


def _launch(name: str, depth: torch.Tensor, camera: torch.Tensor, out: torch.Tensor,
            ray: bool, flip_yz: bool) -> None:
    launch("points", f"{name}_{suffix(depth)}", depth.device, depth.numel(),
           [ptr(depth), *strides(depth, 3), *shape3(depth), ptr(camera), ptr(out),
            *strides(out, 4), np.int32(bool(ray)), np.int32(bool(flip_yz))])


def depth_to_points(depth, camera, points, ray: bool, flip_yz: bool) -> None:
    _launch("depth_to_points", depth, camera, points, ray, flip_yz)


def normals_from_depth(depth, camera, normals, ray: bool, flip_yz: bool) -> None:
    _launch("normals_from_depth", depth, camera, normals, ray, flip_yz)
