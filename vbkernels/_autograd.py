"""The differentiable decoders as functional torch custom ops (docs/format.md, Gradients).

The kernel ops of ``_dispatch`` write into outputs the caller allocated, which autograd
cannot differentiate. When an input needs a gradient the front end calls these instead:
``torch.ops.vbkernels.<op>(rgb, ..., backend)`` allocates the outputs, runs the named
backend's forward kernel into them and returns them, and its backward (registered with
``torch.library.register_autograd``) is the torch code of ``vbkernels.reference.grad``,
which recomputes the segment choice from the saved input. So every backend, fast or not,
gets the same backward; the triton backend runs each as one fused kernel
(``vbkernels/triton/grad.py``, as ops of their own so that ``torch.compile`` traces them).

The front end calls each op through a ``torch.autograd.Function`` with the same backward
(``HilbertProject``, ``DecodeDepth``, ``DecodeNormals``): a custom op's own autograd
registration serves eager autograd and ``torch.compile(fullgraph=True)`` (the op is opaque,
the backward traceable), but not ``torch.func`` transforms, which need an
``autograd.Function`` with ``setup_context``. Through the Function all three work.

Only the input image is saved for the backward; no intermediate of the forward is kept.
"""

from __future__ import annotations

from typing import Optional

import torch

from ._dispatch import load_backend
from .reference import grad as ref_grad


def _launcher(backend: str, name: str):
    """The eager launcher of ``backend``'s kernel op (the op bodies run outside tracing)."""
    op = load_backend(backend).ops[name]
    return getattr(op, "eager_launcher", op)


def _t_dtype(rgb: torch.Tensor) -> torch.dtype:
    return torch.float64 if rgb.dtype == torch.float64 else torch.float32


def _scalar_map(rgb: torch.Tensor, dtype: torch.dtype, wanted: bool = True) -> torch.Tensor:
    """An (N, H, W) output, or an empty placeholder for an output not asked for."""
    shape = tuple(rgb.shape[:3]) if wanted else (0,)
    return torch.empty(shape, dtype=dtype, device=rgb.device)


# --------------------------------------------------------------------------- hilbert_project


@torch.library.custom_op("vbkernels::hilbert_project", mutates_args=())
def hilbert_project(rgb: torch.Tensor, backend: str) -> torch.Tensor:
    t = _scalar_map(rgb, _t_dtype(rgb))
    if rgb.numel():
        _launcher(backend, "hilbert_project")(rgb, t)
    return t


@hilbert_project.register_fake
def _(rgb, backend):
    return _scalar_map(rgb, _t_dtype(rgb))


def _save_input(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[0])
    ctx.arguments = inputs[1:]


def _hilbert_project_backward(ctx, grad_t):
    (rgb,) = ctx.saved_tensors
    if _fused_triton(ctx.arguments[-1]):
        return decode_depth_backward_triton(rgb, grad_t, None, -3.0, 10 / 3, None, True), None
    return ref_grad.hilbert_project_backward(rgb, grad_t), None


# --------------------------------------------------------------------------- decode_depth


@torch.library.custom_op("vbkernels::decode_depth", mutates_args=())
def decode_depth(rgb: torch.Tensor, lam: float, c: float,
                 max_depth: Optional[float],  # noqa: UP045 - as the other op schemas
                 with_distance: bool, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(depth, distance)``; distance is an empty placeholder unless ``with_distance``."""
    depth = _scalar_map(rgb, _t_dtype(rgb))
    distance = _scalar_map(rgb, torch.float32, with_distance)
    if rgb.numel():
        _launcher(backend, "decode_depth")(rgb, depth, distance if with_distance else None,
                                           lam, c, max_depth)
    return depth, distance


@decode_depth.register_fake
def _(rgb, lam, c, max_depth, with_distance, backend):
    return _scalar_map(rgb, _t_dtype(rgb)), _scalar_map(rgb, torch.float32, with_distance)


@torch.library.custom_op("vbkernels::decode_depth_backward_triton", mutates_args=())
def decode_depth_backward_triton(rgb: torch.Tensor,
                                 grad_depth: Optional[torch.Tensor],  # noqa: UP045
                                 grad_distance: Optional[torch.Tensor],  # noqa: UP045
                                 lam: float, c: float,
                                 max_depth: Optional[float],  # noqa: UP045
                                 t_only: bool = False) -> torch.Tensor:
    """The fused Triton kernel of ``ref_grad.decode_depth_backward`` (same arguments), or
    with ``t_only`` of ``ref_grad.hilbert_project_backward`` (``grad_depth`` is ``t``'s)."""
    from .triton.grad import decode_depth_backward

    return decode_depth_backward(rgb, grad_depth, grad_distance, lam, c, max_depth, t_only)


@decode_depth_backward_triton.register_fake
def _(rgb, grad_depth, grad_distance, lam, c, max_depth, t_only=False):
    return torch.empty_like(rgb)


def _fused_triton(backend: str) -> bool:
    """Whether to run the Triton backward kernel: for the triton backend, except under
    torch.func transforms, which batch the backward with vmap (the torch reference is
    written in vmappable ops; the kernel is not)."""
    return backend == "triton" and not torch._C._are_functorch_transforms_active()


def _decode_depth_backward(ctx, grad_depth, grad_distance):
    (rgb,) = ctx.saved_tensors
    lam, c, max_depth, with_distance, backend = ctx.arguments
    grad_distance = grad_distance if with_distance else None
    if _fused_triton(backend):
        grad = decode_depth_backward_triton(rgb, grad_depth, grad_distance, lam, c, max_depth)
    else:
        grad = ref_grad.decode_depth_backward(rgb, grad_depth, grad_distance, lam, c, max_depth)
    return grad, None, None, None, None, None


decode_depth.register_autograd(_decode_depth_backward, setup_context=_save_input)
hilbert_project.register_autograd(_hilbert_project_backward, setup_context=_save_input)


# --------------------------------------------------------------------------- decode_normals


@torch.library.custom_op("vbkernels::decode_normals", mutates_args=())
def decode_normals(rgb: torch.Tensor, flip_yz: bool, eps: float, out_dtype: torch.dtype,
                   with_norm: bool, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(normals, norm)``; norm is an empty placeholder unless ``with_norm``."""
    normals = torch.empty(rgb.shape, dtype=out_dtype, device=rgb.device)
    norm = _scalar_map(rgb, torch.float32, with_norm)
    if rgb.numel():
        _launcher(backend, "decode_normals")(rgb, normals, norm if with_norm else None,
                                             flip_yz, eps)
    return normals, norm


@decode_normals.register_fake
def _(rgb, flip_yz, eps, out_dtype, with_norm, backend):
    return (torch.empty(rgb.shape, dtype=out_dtype, device=rgb.device),
            _scalar_map(rgb, torch.float32, with_norm))


@torch.library.custom_op("vbkernels::decode_normals_backward_triton", mutates_args=())
def decode_normals_backward_triton(rgb: torch.Tensor,
                                   grad_normals: Optional[torch.Tensor],  # noqa: UP045
                                   grad_norm: Optional[torch.Tensor],  # noqa: UP045
                                   flip_yz: bool, eps: float) -> torch.Tensor:
    """The fused Triton kernel of ``ref_grad.decode_normals_backward`` (same arguments)."""
    from .triton.grad import decode_normals_backward

    return decode_normals_backward(rgb, grad_normals, grad_norm, flip_yz, eps)


@decode_normals_backward_triton.register_fake
def _(rgb, grad_normals, grad_norm, flip_yz, eps):
    return torch.empty_like(rgb)


def _decode_normals_backward(ctx, grad_normals, grad_norm):
    (rgb,) = ctx.saved_tensors
    flip_yz, eps, _, with_norm, backend = ctx.arguments
    grad_norm = grad_norm if with_norm else None
    if _fused_triton(backend):
        grad = decode_normals_backward_triton(rgb, grad_normals, grad_norm, flip_yz, eps)
    else:
        grad = ref_grad.decode_normals_backward(rgb, grad_normals, grad_norm, flip_yz, eps)
    return grad, None, None, None, None, None


decode_normals.register_autograd(_decode_normals_backward, setup_context=_save_input)


# --------------------------------------------------------------------------- torch.func


class HilbertProject(torch.autograd.Function):
    """``HilbertProject.apply(rgb, backend)``: the op, usable under ``torch.func``."""

    @staticmethod
    def forward(rgb, backend):
        return hilbert_project(rgb, backend)

    setup_context = staticmethod(_save_input)
    backward = staticmethod(_hilbert_project_backward)


class DecodeDepth(torch.autograd.Function):
    """``DecodeDepth.apply(rgb, lam, c, max_depth, with_distance, backend)``."""

    @staticmethod
    def forward(rgb, lam, c, max_depth, with_distance, backend):
        return decode_depth(rgb, lam, c, max_depth, with_distance, backend)

    setup_context = staticmethod(_save_input)
    backward = staticmethod(_decode_depth_backward)


class DecodeNormals(torch.autograd.Function):
    """``DecodeNormals.apply(rgb, flip_yz, eps, out_dtype, with_norm, backend)``."""

    @staticmethod
    def forward(rgb, flip_yz, eps, out_dtype, with_norm, backend):
        return decode_normals(rgb, flip_yz, eps, out_dtype, with_norm, backend)

    setup_context = staticmethod(_save_input)
    backward = staticmethod(_decode_normals_backward)
