"""The ``torch`` backend: the pure-PyTorch reference, on CPU and CUDA tensors alike.

Clarity over speed, but never unbounded memory: every op works in chunks of pixels (and of
palette entries), so peak working memory stays bounded at any batch size.
"""

from __future__ import annotations

from .._dispatch import Backend, ops_from_modules
from . import colormap, depth, instances, normals, points, segmentation


def load() -> Backend:
    return Backend(
        name="torch",
        devices=frozenset({"cpu", "cuda"}),
        ops=ops_from_modules(depth, normals, segmentation, instances, colormap, points),
    )
