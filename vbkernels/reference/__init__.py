"""The ``torch`` backend: the pure-PyTorch reference, on CPU and CUDA tensors alike.

Clarity over speed, but never unbounded memory: every op works in chunks of pixels (and of
palette entries), so peak working memory stays bounded at any batch size.
"""

from __future__ import annotations

from .._dispatch import Backend
from . import depth, normals, segmentation


def load() -> Backend:
    return Backend(
        name="torch",
        devices=frozenset({"cpu", "cuda"}),
        float64_outputs=True,
        ops={
            "hilbert_project": depth.hilbert_project,
            "decode_depth": depth.decode_depth,
            "hilbert_walk": depth.hilbert_walk,
            "encode_depth": depth.encode_depth,
            "decode_normals": normals.decode_normals,
            "encode_normals": normals.encode_normals,
            "decode_segmentation": segmentation.decode_segmentation,
            "encode_segmentation": segmentation.encode_segmentation,
        },
    )
