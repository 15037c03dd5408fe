"""The Triton kernel ops registered as torch custom ops (``torch.ops.vbkernels_triton``).

The registration itself is shared with the compiled backends: see ``vbkernels._register``.
"""

from __future__ import annotations

from .._register import register
from . import colormap, depth, normals, points, segmentation

NAMESPACE = "vbkernels_triton"

OPS = register(NAMESPACE, colormap, depth, normals, points, segmentation)
