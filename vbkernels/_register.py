"""Kernel ops as torch custom ops, shared by the fast backends (``triton``, ``cpu``, ``cuda``).

Each launcher becomes an opaque op that declares the destination tensors it writes, so
``torch.compile(fullgraph=True)`` traces a call without a graph break, functionalises the
in-place write and never looks inside the kernel. ``torch.library.custom_op`` (not
``triton_op``) behaves the same under the Triton interpreter, on CUDA and on every torch
from 2.4. ``register`` is called once per backend namespace with that backend's launcher
modules; the launchers run on the current CUDA stream, so calls made under
``torch.cuda.graph`` capture are recorded into the graph.
"""

from __future__ import annotations

from types import ModuleType
from typing import Callable, Optional

import torch


def _no_fake(*args, **kwargs) -> None:
    """Fake kernel of every op: they only write into tensors the caller allocated."""
    return None


def register(namespace: str, depth: ModuleType, normals: ModuleType,
             segmentation: ModuleType) -> dict[str, Callable]:
    """Register the eight kernel ops under ``torch.ops.<namespace>`` and return them by name."""

    @torch.library.custom_op(f"{namespace}::hilbert_project", mutates_args=("t",))
    def hilbert_project(rgb: torch.Tensor, t: torch.Tensor) -> None:
        depth.hilbert_project(rgb, t)

    @torch.library.custom_op(f"{namespace}::decode_depth", mutates_args=("depth_out", "distance"))
    def decode_depth(rgb: torch.Tensor, depth_out: torch.Tensor, distance: Optional[torch.Tensor],
                     lam: float, c: float, max_depth: Optional[float]) -> None:
        depth.decode_depth(rgb, depth_out, distance, lam, c, max_depth)

    @torch.library.custom_op(f"{namespace}::decode_normals", mutates_args=("normals_out", "norm"))
    def decode_normals(rgb: torch.Tensor, normals_out: torch.Tensor, norm: Optional[torch.Tensor],
                       flip_yz: bool, eps: float) -> None:
        normals.decode_normals(rgb, normals_out, norm, flip_yz, eps)

    @torch.library.custom_op(f"{namespace}::decode_segmentation",
                             mutates_args=("labels", "distance"))
    def decode_segmentation(rgb: torch.Tensor, palette: torch.Tensor, labels: torch.Tensor,
                            distance: Optional[torch.Tensor], max_dist2: Optional[float],
                            ignore_index: int) -> None:
        segmentation.decode_segmentation(rgb, palette, labels, distance, max_dist2, ignore_index)

    @torch.library.custom_op(f"{namespace}::hilbert_walk", mutates_args=("rgb",))
    def hilbert_walk(t: torch.Tensor, rgb: torch.Tensor) -> None:
        depth.hilbert_walk(t, rgb)

    @torch.library.custom_op(f"{namespace}::encode_depth", mutates_args=("rgb",))
    def encode_depth(depth_in: torch.Tensor, rgb: torch.Tensor, lam: float, c: float) -> None:
        depth.encode_depth(depth_in, rgb, lam, c)

    @torch.library.custom_op(f"{namespace}::encode_normals", mutates_args=("rgb",))
    def encode_normals(normals_in: torch.Tensor, rgb: torch.Tensor, flip_yz: bool) -> None:
        normals.encode_normals(normals_in, rgb, flip_yz)

    @torch.library.custom_op(f"{namespace}::encode_segmentation", mutates_args=("rgb",))
    def encode_segmentation(labels: torch.Tensor, palette: torch.Tensor, rgb: torch.Tensor,
                            ignore_color: torch.Tensor) -> None:
        segmentation.encode_segmentation(labels, palette, rgb, ignore_color)

    ops = {
        "hilbert_project": hilbert_project,
        "decode_depth": decode_depth,
        "decode_normals": decode_normals,
        "decode_segmentation": decode_segmentation,
        "hilbert_walk": hilbert_walk,
        "encode_depth": encode_depth,
        "encode_normals": encode_normals,
        "encode_segmentation": encode_segmentation,
    }
    for op in ops.values():
        op.register_fake(_no_fake)
    return ops
