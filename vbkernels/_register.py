"""Kernel ops as torch custom ops, shared by the fast backends (``triton``, ``cpu``, ``cuda``).

Each launcher becomes an opaque op that declares the destination tensors it writes, so
``torch.compile(fullgraph=True)`` traces a call without a graph break, functionalises the
in-place write and never looks inside the kernel. ``torch.library.custom_op`` (not
``triton_op``) behaves the same under the Triton interpreter, on CUDA and on every torch
from 2.4. The launchers run on the current CUDA stream, so calls made under
``torch.cuda.graph`` capture are recorded into the graph.

The schema of every op is written once, below, as a stub whose parameters the op takes and
whose ``mutates`` names the outputs it writes; ``register`` builds a backend's ops from the
launchers its modules define under the same names (``_dispatch.KERNEL_OP_NAMES``). Each
registered op keeps its launcher as ``op.eager_launcher``: outside ``torch.compile`` the
dispatcher calls that directly, because the first call of a custom op imports torch's
compiler stack (``torch._dynamo``, ``torch._inductor``, ``sympy``: about a second).
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Callable, Optional

import torch

from ._dispatch import KERNEL_OP_NAMES, ops_from_modules

_SIGNATURES: dict[str, tuple[Callable, tuple[str, ...]]] = {}


def _signature(*mutates: str):
    """Record the decorated stub as the schema of the op of the same name."""

    def record(stub: Callable) -> Callable:
        _SIGNATURES[stub.__name__] = (stub, mutates)
        return stub

    return record


# The stubs' bodies never run; their parameter names and annotations are the op schemas.


@_signature("t")
def hilbert_project(rgb: torch.Tensor, t: torch.Tensor) -> None: ...


@_signature("depth_out", "distance")
def decode_depth(rgb: torch.Tensor, depth_out: torch.Tensor, distance: Optional[torch.Tensor],
                 lam: float, c: float, max_depth: Optional[float]) -> None: ...


@_signature("normals_out", "norm")
def decode_normals(rgb: torch.Tensor, normals_out: torch.Tensor, norm: Optional[torch.Tensor],
                   flip_yz: bool, eps: float) -> None: ...


@_signature("labels", "distance")
def decode_segmentation(rgb: torch.Tensor, palette: torch.Tensor, labels: torch.Tensor,
                        distance: Optional[torch.Tensor], max_dist2: Optional[float],
                        ignore_index: int) -> None: ...


@_signature("rgb")
def hilbert_walk(t: torch.Tensor, rgb: torch.Tensor) -> None: ...


@_signature("rgb")
def encode_depth(depth_in: torch.Tensor, rgb: torch.Tensor, lam: float, c: float) -> None: ...


@_signature("rgb")
def encode_normals(normals_in: torch.Tensor, rgb: torch.Tensor, flip_yz: bool) -> None: ...


@_signature("rgb")
def encode_segmentation(labels: torch.Tensor, palette: torch.Tensor, rgb: torch.Tensor,
                        ignore_color: torch.Tensor) -> None: ...


@_signature("t", "distance")
def decode_colormap(rgb: torch.Tensor, colours: torch.Tensor, positions: torch.Tensor,
                    t: torch.Tensor, distance: Optional[torch.Tensor],
                    max_distance: Optional[float]) -> None: ...


@_signature("points")
def depth_to_points(depth: torch.Tensor, camera: torch.Tensor, points: torch.Tensor, ray: bool,
                    flip_yz: bool) -> None: ...


@_signature("normals")
def normals_from_depth(depth: torch.Tensor, camera: torch.Tensor, normals: torch.Tensor,
                       ray: bool, flip_yz: bool) -> None: ...


@_signature("count_all", "count_flat", "sum_flat")
def colour_histogram(rgb: torch.Tensor, flat_tolerance_q: int, count_all: torch.Tensor,
                     count_flat: torch.Tensor, sum_flat: torch.Tensor) -> None: ...


@_signature("labels", "counts")
def assign_pixels(rgb: torch.Tensor, centres_q: torch.Tensor, num_centres: torch.Tensor,
                  max_dist2_q: int, first_label: int, labels: torch.Tensor,
                  counts: torch.Tensor) -> None: ...


assert set(_SIGNATURES) == set(KERNEL_OP_NAMES), "one schema per kernel op name"


def _no_fake(*args, **kwargs) -> None:
    """Fake kernel of every op: they only write into tensors the caller allocated."""
    return None


# Every op registered so far, by qualified name: torch refuses a second registration.
_REGISTERED: dict[str, Callable] = {}


def _custom_op(namespace: str, name: str, launcher: Callable) -> Callable:
    qualified = f"{namespace}::{name}"
    if qualified in _REGISTERED:
        return _REGISTERED[qualified]
    stub, mutates = _SIGNATURES[name]

    @functools.wraps(stub)  # the schema is inferred from the stub's signature
    def run(*args) -> None:
        launcher(*args)

    op = torch.library.custom_op(qualified, run, mutates_args=mutates)
    op.register_fake(_no_fake)
    op.eager_launcher = launcher
    _REGISTERED[qualified] = op
    return op


def register(namespace: str, *modules: ModuleType) -> dict[str, Callable]:
    """Register, under ``torch.ops.<namespace>``, every kernel op that ``modules`` define
    (by its ``KERNEL_OP_NAMES`` name), and return the ops by name."""
    return register_launchers(namespace, ops_from_modules(*modules))


def register_launchers(namespace: str, launchers: dict[str, Callable]) -> dict[str, Callable]:
    """Register each launcher as ``torch.ops.<namespace>.<name>``; return the ops by name."""
    return {name: _custom_op(namespace, name, launcher) for name, launcher in launchers.items()}
