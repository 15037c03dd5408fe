"""The ``cuda`` backend: hand-written CUDA kernels (``csrc/*.cu``) compiled at first use.

An independent second fast GPU implementation beside Triton, for users without Triton. The
kernels include ``csrc/vbk_math.cuh``, the same per-pixel math the ``cpu`` backend compiles
for the host, and are compiled by CuPy's NVRTC for the GPU at hand (cached on disk), read
torch tensors zero-copy through their data pointers and strides, and launch on torch's
current stream under the tensor's device. ``load()`` raises ``BackendUnavailable`` without
CuPy or without a CUDA device.
"""

from __future__ import annotations

import torch

from .._dispatch import Backend, BackendUnavailable

_ops: dict | None = None


def load() -> Backend:
    global _ops
    from . import _lib

    _lib.require_cupy()
    if not torch.cuda.is_available():
        raise BackendUnavailable("the cuda backend needs a CUDA device, and torch sees none")
    _lib.source_dir()
    if _ops is None:
        from .._register import register
        from . import colormap, depth, normals, points, segmentation

        _ops = register("vbkernels_cuda", colormap, depth, normals, points, segmentation)
    return Backend(name="cuda", devices=frozenset({"cuda"}), ops=dict(_ops))
