"""The ``numpy`` backend: the vectorised NumPy baseline every benchmark compares against.

Its ops are written against NumPy arrays; ``load()`` wraps each one so that the front end's
torch views reach it as arrays sharing the same memory (bfloat16, which NumPy lacks, goes
through a float32 copy, which is exact).
"""

from __future__ import annotations

import functools

import torch

from .._dispatch import Backend, ops_from_modules
from . import colormap, depth, normals, segmentation


def _as_array(x):
    if isinstance(x, torch.Tensor):
        if x.dtype == torch.bfloat16:
            x = x.to(torch.float32)
        return x.numpy()
    return x


def _numpy_op(fn):
    """Call ``fn`` on arrays; outputs NumPy cannot view (bfloat16) are filled by copy-back."""

    @functools.wraps(fn)
    def run(*args):
        copy_back = []
        arrays = []
        for arg in args:
            if isinstance(arg, torch.Tensor) and arg.dtype == torch.bfloat16:
                scratch = arg.to(torch.float32)
                copy_back.append((arg, scratch))
                arrays.append(scratch.numpy())
            else:
                arrays.append(_as_array(arg))
        fn(*arrays)
        for target, scratch in copy_back:
            target.copy_(scratch)

    return run


def load() -> Backend:
    ops = ops_from_modules(depth, normals, segmentation, colormap)
    return Backend(
        name="numpy",
        devices=frozenset({"cpu"}),
        ops={name: _numpy_op(fn) for name, fn in ops.items()},
    )


__all__ = ["load"]
