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
``autograd.Function`` with ``setup_context``. Through the Function all three work. Inside a
``torch.func`` transform the front end takes subclasses with ``vmap`` rules (a vmapped batch
runs as one larger batch of the same kernel) and ``jvp`` rules (each pixel's gradient from
the reference backward, dotted with the tangent), so ``vmap``, ``jvp`` and ``jacfwd`` work
too; Dynamo cannot trace a Function with ``jvp``, so compiled code sees the plain classes.

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


def _save_for_both(ctx, inputs, output) -> None:
    """Saves the input for the backward and for ``jvp`` (forward mode, as jacfwd uses)."""
    _save_input(ctx, inputs, output)
    ctx.save_for_forward(inputs[0])


def _batched(function, info, in_dims, rgb, *arguments):
    """The ``vmap`` rule of the three Functions below: the kernels are per pixel, so a
    vmapped (B, N, H, W, 3) batch runs as one (B*N, H, W, 3) call of the same Function
    (which keeps its backward), and the outputs are split back into (B, N, ...)."""
    if in_dims[0] is None:  # only the image can be batched: the other arguments are not tensors
        outputs = function.apply(rgb, *arguments)
        return outputs, (None,) * len(outputs) if isinstance(outputs, tuple) else None
    rgb = rgb.movedim(in_dims[0], 0)
    outputs = function.apply(rgb.reshape((-1,) + tuple(rgb.shape[2:])), *arguments)
    if not isinstance(outputs, tuple):
        return outputs.reshape((info.batch_size, -1) + tuple(outputs.shape[1:])), 0
    # An output not asked for is an empty (0,) placeholder: unbatched.
    split = tuple(o.reshape((info.batch_size, -1) + tuple(o.shape[1:])) if o.ndim > 1 else o
                  for o in outputs)
    return split, tuple(0 if o.ndim > 1 else None for o in outputs)


def _pixel_jvp(backward, rgb: torch.Tensor, rgb_tangent: torch.Tensor) -> torch.Tensor:
    """Forward-mode derivative of a per-pixel scalar map: each pixel's gradient (the
    backward of a unit output) dotted with the image's tangent."""
    gradient = backward(torch.ones(rgb.shape[:-1], dtype=rgb.dtype, device=rgb.device))
    return (gradient * rgb_tangent).sum(-1)


class HilbertProject(torch.autograd.Function):
    """``HilbertProject.apply(rgb, backend)``: the op as an autograd Function, for eager
    autograd, ``torch.compile`` and the reverse-mode ``torch.func`` transforms."""

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


# The same Functions with ``vmap`` and ``jvp`` rules, for use inside torch.func transforms
# only: Dynamo cannot trace an autograd.Function that defines ``jvp`` (it graph-breaks), so
# the plain classes above stay what eager code and torch.compile see.


class HilbertProjectFunc(HilbertProject):
    """HilbertProject plus ``vmap`` and forward mode (``jvp``, ``jacfwd``)."""

    setup_context = staticmethod(_save_for_both)

    @staticmethod
    def jvp(ctx, rgb_tangent, _):
        (rgb,) = ctx.saved_tensors
        return _pixel_jvp(lambda ones: ref_grad.hilbert_project_backward(rgb, ones), rgb,
                          rgb_tangent).to(_t_dtype(rgb))

    @staticmethod
    def vmap(info, in_dims, rgb, backend):
        return _batched(HilbertProjectFunc, info, in_dims, rgb, backend)


class DecodeDepthFunc(DecodeDepth):
    """DecodeDepth plus ``vmap`` and forward mode."""

    setup_context = staticmethod(_save_for_both)

    @staticmethod
    def jvp(ctx, rgb_tangent, *_):
        (rgb,) = ctx.saved_tensors
        lam, c, max_depth, with_distance, _ = ctx.arguments
        depth = _pixel_jvp(lambda ones: ref_grad.decode_depth_backward(
            rgb, ones, None, lam, c, max_depth), rgb, rgb_tangent).to(_t_dtype(rgb))
        if not with_distance:
            return depth, _scalar_map(rgb, torch.float32, False)
        distance = _pixel_jvp(lambda ones: ref_grad.decode_depth_backward(
            rgb, None, ones, lam, c, max_depth), rgb, rgb_tangent)
        return depth, distance.to(torch.float32)

    @staticmethod
    def vmap(info, in_dims, rgb, *arguments):
        return _batched(DecodeDepthFunc, info, in_dims, rgb, *arguments)


class DecodeNormalsFunc(DecodeNormals):
    """DecodeNormals plus ``vmap`` and forward mode."""

    setup_context = staticmethod(_save_for_both)

    @staticmethod
    def jvp(ctx, rgb_tangent, *_):
        (rgb,) = ctx.saved_tensors
        flip_yz, eps, out_dtype, with_norm, _ = ctx.arguments

        def component(axis):  # row `axis` of each pixel's 3x3 Jacobian, dotted with the tangent
            def backward(ones):
                unit = torch.zeros(rgb.shape, dtype=rgb.dtype, device=rgb.device)
                unit[..., axis] = ones
                return ref_grad.decode_normals_backward(rgb, unit, None, flip_yz, eps)
            return _pixel_jvp(backward, rgb, rgb_tangent)

        normals = torch.stack([component(axis) for axis in range(3)], -1).to(out_dtype)
        if not with_norm:
            return normals, _scalar_map(rgb, torch.float32, False)
        norm = _pixel_jvp(lambda ones: ref_grad.decode_normals_backward(
            rgb, None, ones, flip_yz, eps), rgb, rgb_tangent)
        return normals, norm.to(torch.float32)

    @staticmethod
    def vmap(info, in_dims, rgb, *arguments):
        return _batched(DecodeNormalsFunc, info, in_dims, rgb, *arguments)


def function(name: str) -> type[torch.autograd.Function]:
    """The Function for ``name`` (hilbert_project, decode_depth, decode_normals): with the
    ``vmap``/``jvp`` rules inside a torch.func transform, else the plain one."""
    transformed = torch._C._are_functorch_transforms_active()
    plain, func = {"hilbert_project": (HilbertProject, HilbertProjectFunc),
                   "decode_depth": (DecodeDepth, DecodeDepthFunc),
                   "decode_normals": (DecodeNormals, DecodeNormalsFunc)}[name]
    return func if transformed else plain
