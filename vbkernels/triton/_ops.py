"""The Triton kernel ops registered as torch custom ops (``torch.ops.vbkernels_triton``).

Registration makes each launcher an opaque op with a declared mutation of its destination
tensors: ``torch.compile(fullgraph=True)`` traces through a call without a graph break,
functionalises the in-place write, and never tries to look inside the kernel. We use
``torch.library.custom_op`` rather than ``triton_op`` because it behaves the same under
the Triton interpreter (CPU tensors, where CI tests the registration with ``opcheck``), on
CUDA, and on every torch from 2.4. The kernels launch on the current CUDA stream (Triton's
default), so calls made under ``torch.cuda.graph`` capture are recorded into the graph.
"""

from __future__ import annotations

from typing import Optional

import torch

from . import depth as depth_kernels
from . import normals as normals_kernels
from . import segmentation as segmentation_kernels

NAMESPACE = "vbkernels_triton"


def _no_fake(*args, **kwargs) -> None:
    """Fake kernel of every op: they only write into tensors the caller allocated."""
    return None


@torch.library.custom_op(f"{NAMESPACE}::hilbert_project", mutates_args=("t",))
def hilbert_project(rgb: torch.Tensor, t: torch.Tensor) -> None:
    depth_kernels.hilbert_project(rgb, t)


@torch.library.custom_op(f"{NAMESPACE}::decode_depth", mutates_args=("depth", "distance"))
def decode_depth(
    rgb: torch.Tensor, depth: torch.Tensor, distance: Optional[torch.Tensor],
    lam: float, c: float, max_depth: Optional[float],
) -> None:
    depth_kernels.decode_depth(rgb, depth, distance, lam, c, max_depth)


@torch.library.custom_op(f"{NAMESPACE}::decode_normals", mutates_args=("normals", "norm"))
def decode_normals(
    rgb: torch.Tensor, normals: torch.Tensor, norm: Optional[torch.Tensor],
    flip_yz: bool, eps: float,
) -> None:
    normals_kernels.decode_normals(rgb, normals, norm, flip_yz, eps)


@torch.library.custom_op(
    f"{NAMESPACE}::decode_segmentation", mutates_args=("labels", "distance")
)
def decode_segmentation(
    rgb: torch.Tensor, palette: torch.Tensor, labels: torch.Tensor,
    distance: Optional[torch.Tensor], max_dist2: Optional[float], ignore_index: int,
) -> None:
    segmentation_kernels.decode_segmentation(
        rgb, palette, labels, distance, max_dist2, ignore_index
    )


@torch.library.custom_op(f"{NAMESPACE}::hilbert_walk", mutates_args=("rgb",))
def hilbert_walk(t: torch.Tensor, rgb: torch.Tensor) -> None:
    depth_kernels.hilbert_walk(t, rgb)


@torch.library.custom_op(f"{NAMESPACE}::encode_depth", mutates_args=("rgb",))
def encode_depth(depth: torch.Tensor, rgb: torch.Tensor, lam: float, c: float) -> None:
    depth_kernels.encode_depth(depth, rgb, lam, c)


@torch.library.custom_op(f"{NAMESPACE}::encode_normals", mutates_args=("rgb",))
def encode_normals(normals: torch.Tensor, rgb: torch.Tensor, flip_yz: bool) -> None:
    normals_kernels.encode_normals(normals, rgb, flip_yz)


@torch.library.custom_op(f"{NAMESPACE}::encode_segmentation", mutates_args=("rgb",))
def encode_segmentation(
    labels: torch.Tensor, palette: torch.Tensor, rgb: torch.Tensor, ignore_color: torch.Tensor,
) -> None:
    segmentation_kernels.encode_segmentation(labels, palette, rgb, ignore_color)


OPS = {
    "hilbert_project": hilbert_project,
    "decode_depth": decode_depth,
    "decode_normals": decode_normals,
    "decode_segmentation": decode_segmentation,
    "hilbert_walk": hilbert_walk,
    "encode_depth": encode_depth,
    "encode_normals": encode_normals,
    "encode_segmentation": encode_segmentation,
}

for _op in OPS.values():
    _op.register_fake(_no_fake)
