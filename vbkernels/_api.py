"""The public functions (docs/format.md, Public API): validate, allocate, dispatch, return.

Each function turns its input into the canonical (N, H, W, 3) view (``_checks``), picks a
backend (``_dispatch``), allocates or checks the output and calls the backend's kernel op,
which writes the output in place. NumPy in gives NumPy out: arrays are wrapped as tensors
without a copy and the outputs are handed back as arrays sharing the same memory.

One dtype rule for depth and ``t`` on every backend: float64 input gives float64 output,
every other input float32 (docs/format.md, Units and dtypes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from . import _autograd
from . import _checks as chk
from ._checks import Image
from ._checks import ignore_index as _check_ignore_index
from ._checks import image as _image
from ._checks import torch_dtype as _torch_dtype
from ._dispatch import BACKEND_NAMES, Backend, BackendUnavailable, load_backend, select
from .palettes import palette_arguments
from .reference import depth as ref_depth
from .reference import grad as ref_grad
from .reference._common import work_dtype

DEFAULT_LAM = -3.0
DEFAULT_C = 10.0 / 3.0

# What the public functions take and give back: a torch tensor, or a NumPy array (NumPy in,
# NumPy out). Dtypes: see each function.
Array = torch.Tensor | np.ndarray
DType = torch.dtype | np.dtype | type | str


class _Output:
    """An output tensor plus the (N, H, W[, 3]) view its kernel writes.

    A caller's ``out=`` whose strides cannot be viewed that way gets a scratch buffer that
    is copied back after the kernel, so no layout of ``out`` is ever silently skipped.
    """

    def __init__(self, tensor: torch.Tensor, kernel_shape: tuple[int, ...], channels_first=False):
        self.tensor = tensor
        hwc = tensor.movedim(-3, -1) if channels_first else tensor
        try:
            self.kernel = hwc.view(kernel_shape)
            self._scratch_of = None
        except RuntimeError:
            self.kernel = torch.empty(kernel_shape, dtype=tensor.dtype, device=tensor.device)
            self._scratch_of = hwc

    def finish(self, numpy_io: bool, user_out: Any = None) -> Any:
        if self._scratch_of is not None:
            self._scratch_of.copy_(self.kernel.view(self._scratch_of.shape))
        if user_out is not None:
            return user_out
        return self.tensor.numpy() if numpy_io else self.tensor


def _output(out, shape, dtype, device, numpy_io, kernel_shape, channels_first=False):
    tensor = chk.check_out(out, shape, dtype, device, numpy_io)
    if tensor is None:
        tensor = torch.empty(shape, dtype=dtype, device=device)
    return _Output(tensor, kernel_shape, channels_first)


def _scalar_output(img: Image, dtype: torch.dtype, out: Any = None) -> _Output:
    shape = img.batch + img.hw
    return _output(out, shape, dtype, img.tensor.device, img.numpy_io, tuple(img.view.shape[:3]))


def _select(op: str, backend: str, tensor: torch.Tensor,
            needs_grad: bool = False) -> tuple[Backend, Callable]:
    return select(op, backend, tensor.device, tensor.dtype, needs_grad)


def _needs_grad(tensor: torch.Tensor) -> bool:
    """Whether autograd would record an op on ``tensor`` (docs/format.md, Gradients)."""
    return tensor.requires_grad and torch.is_grad_enabled()


def _transformed() -> bool:
    """Whether a ``torch.func`` transform (vmap, grad, jvp, jacfwd, ...) is running: its
    tensors have no storage for a kernel to write into, so the differentiable decoders go
    through their ``autograd.Function`` (which has ``vmap`` and ``jvp`` rules) and the
    others refuse (see ``_refuse_transforms``)."""
    return torch._C._are_functorch_transforms_active()


_TRANSFORMABLE = "decode_depth, hilbert_project and decode_normals (and segmentation_logits)"


def _refuse_transforms(name: str) -> None:
    """A decoder with no ``torch.func`` rules says so, instead of failing on a tensor
    without storage."""
    if _transformed():
        raise RuntimeError(
            f"{name} does not support torch.func transforms (vmap, grad, vjp, jvp, jacrev, "
            f"jacfwd); {_TRANSFORMABLE} do. Call it outside the transform, or loop over the "
            "batch")


def _refuse_out_with_grad(out: Any, needs_grad: bool) -> None:
    """``out=`` cannot carry a gradient (as in torch's own ``out=`` arguments), nor a
    ``torch.func`` transform's batched or dual tensors."""
    if needs_grad and out is not None:
        raise RuntimeError("out= does not support autograd or torch.func transforms: the "
                           "input requires grad or is transformed; drop out= (or call "
                           "under torch.no_grad())")


def _temperature(value: Any) -> float | None:
    if value is None:
        return None
    value = chk.finite_float(value, "temperature")
    if not value > 0.0:
        raise ValueError(f"temperature must be > 0, got {value}")
    return value


def _new_result(img: Image, result: torch.Tensor, out: Any = None) -> Any:
    """An (N, H, W) result computed as a new tensor (the differentiable paths), shaped like
    the image's batch and handed back as the other paths do (``out=`` only without grad)."""
    result = result.reshape(img.batch + img.hw)
    if out is not None:
        chk.check_out(out, tuple(result.shape), result.dtype, result.device,
                      img.numpy_io).copy_(result)
        return out
    return result.numpy() if img.numpy_io else result


def _t_dtype(img: Image) -> torch.dtype:
    """The dtype of depth and ``t``: float64 for float64 input, float32 otherwise."""
    return torch.float64 if img.tensor.dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------- depth


def hilbert_project(rgb: Array, *, layout: str = "auto", temperature: float | None = None,
                    backend: str = "auto", out: Array | None = None) -> Array:
    """Position ``t`` of each pixel on the cube walk (docs/format.md, Depth).

    Each pixel goes to the nearest of the walk's 7 segments (ties to the lowest segment),
    and ``t = (k + s) / 7`` for segment ``k`` at local position ``s``. uint8 input picks the
    segment exactly (integer distances), so every backend returns the same ``t``.

    Args:
        rgb: image of shape ``(*, H, W, 3)`` or ``(*, 3, H, W)``: uint8 (0..255) or
            float16/bfloat16/float32/float64 in [0, 1] (clamped); a torch tensor on any
            device with any strides, or a NumPy array.
        layout: ``"hwc"``, ``"chw"`` or ``"auto"`` (last dim 3 means hwc, else dim -3).
        temperature: ``None`` for the hard projection above, or ``> 0`` for the smooth one
            used in training: a softmin over the 7 segments' projections with weights
            ``softmax(-dist²/temperature)`` (squared distances in 0..255 units), which lets a
            gradient carry a colour past a walk vertex and tends to the hard ``t`` (away
            from exact ties) as ``temperature -> 0``. Computed in torch ops on any device.
        backend: ``"auto"`` or a name from :func:`available_backends`.
        out: optional preallocated output of the result's shape, dtype and device (a NumPy
            array for NumPy input); written and returned. Not with an input that requires
            grad.

    Returns:
        ``t`` of shape ``(*, H, W)`` in [0, 1]: float64 for float64 input, else float32, on
        the input's device (NumPy in, NumPy out). A NaN channel gives NaN. Differentiable
        for a float input that requires grad, on every backend: ``dt/dx = ±1/7`` along the
        nearest segment's varying channel, zero along its fixed channels, at ties, NaN
        pixels and clamped channels (docs/format.md, Gradients).

    Example::

        >>> rgb = torch.tensor([[[255, 0, 0], [0, 255, 0]]], dtype=torch.uint8)
        >>> hilbert_project(rgb)
        tensor([[0.1429, 0.4286]])
    """
    img = _image(rgb, layout)
    temperature = _temperature(temperature)
    needs_grad = _needs_grad(img.tensor)
    functional = needs_grad or _transformed()
    _refuse_out_with_grad(out, functional)
    chosen, op = _select("hilbert_project", backend, img.tensor, needs_grad)
    if temperature is not None:
        return _new_result(img, ref_grad.soft_walk_position(img.view, temperature)[0], out)
    if functional:
        return _new_result(img, _autograd.function("hilbert_project").apply(img.view, chosen.name))
    t = _scalar_output(img, _t_dtype(img), out)
    if not img.empty:
        op(img.view, t.kernel)
    return t.finish(img.numpy_io, out)


def decode_depth(rgb: Array, *, lam: float = DEFAULT_LAM, c: float = DEFAULT_C,
                 layout: str = "auto", max_depth: float | None = None,
                 return_distance: bool = False, temperature: float | None = None,
                 backend: str = "auto",
                 out: Array | None = None) -> Array | tuple[Array, Array]:
    """Metric depth from cube-walk RGB: the walk position ``t``, then the inverse power
    transform (docs/format.md, Depth).

    Args:
        rgb: image of shape ``(*, H, W, 3)`` or ``(*, 3, H, W)``: uint8 (0..255) or
            float16/bfloat16/float32/float64 in [0, 1] (clamped); a torch tensor on any
            device with any strides, or a NumPy array.
        lam: power-transform exponent, finite and ``< -1``.
        c: power-transform scale, finite and ``> 0``.
        layout: ``"hwc"``, ``"chw"`` or ``"auto"``.
        max_depth: if given (``>= 0``), depths above it, white included, are clamped to it.
        return_distance: also return each pixel's Euclidean distance to the walk.
        temperature: ``None``, or ``> 0`` to decode depth from the smooth walk position of
            :func:`hilbert_project` (for training; the distance stays the hard one).
        backend: ``"auto"`` or a name from :func:`available_backends`.
        out: optional preallocated depth output (shape, dtype and device of the result);
            not with an input that requires grad.

    Returns:
        depth of shape ``(*, H, W)`` in [0, inf] (metres for the default ``lam``, ``c``;
        white is ``+inf``): float64 for float64 input, else float32, on the input's device
        (NumPy in, NumPy out). With ``return_distance=True`` a tuple ``(depth, distance)``,
        distance ``(*, H, W)`` float32 in 0..255 units: a confidence signal, since a colour
        far from the walk is not a trustworthy depth. A NaN channel gives NaN in both.

        Both are differentiable for a float input that requires grad, on every backend
        (docs/format.md, Gradients): depth through ``t`` and the inverse power transform's
        derivative (zero for white, and above ``max_depth``); distance along the nearest
        segment's two fixed channels (its varying channel does not move it). Ties, NaN
        pixels and clamped channels get zero gradient.

    Example::

        >>> rgb = torch.tensor([[[255, 0, 0], [0, 0, 255], [255, 255, 255]]], dtype=torch.uint8)
        >>> decode_depth(rgb)
        tensor([[0.8012, 8.7083,    inf]])
    """
    lam, c = chk.power_params(lam, c)
    max_depth = chk.optional_positive(max_depth, "max_depth")
    img = _image(rgb, layout)
    temperature = _temperature(temperature)
    needs_grad = _needs_grad(img.tensor)
    functional = needs_grad or _transformed()
    _refuse_out_with_grad(out, functional)
    chosen, op = _select("decode_depth", backend, img.tensor, needs_grad)
    if functional or temperature is not None:
        return _differentiable_depth(img, chosen.name, lam, c, max_depth, return_distance,
                                     temperature, out)
    depth = _scalar_output(img, _t_dtype(img), out)
    distance = _scalar_output(img, torch.float32) if return_distance else None
    if not img.empty:
        op(img.view, depth.kernel, distance.kernel if distance else None, lam, c, max_depth)
    result = depth.finish(img.numpy_io, out)
    if distance is None:
        return result
    return result, distance.finish(img.numpy_io)


def _differentiable_depth(img: Image, backend: str, lam: float, c: float,
                          max_depth: float | None, return_distance: bool,
                          temperature: float | None, out: Any):
    """decode_depth as new tensors with a backward: the backend's kernel through the
    functional op of ``_autograd``; with a temperature, depth from the smooth ``t``."""
    if temperature is None or return_distance:
        depth, distance = _autograd.function("decode_depth").apply(img.view, lam, c, max_depth,
                                                       return_distance, backend)
    if temperature is not None:
        t, u = ref_grad.soft_walk_position(img.view, temperature)
        depth = ref_grad.soft_depth(t, u, lam, c, max_depth)
    depth = _new_result(img, depth, out)
    return (depth, _new_result(img, distance)) if return_distance else depth


def power_transform(depth: Array | float, *, lam: float = DEFAULT_LAM,
                    c: float = DEFAULT_C) -> Array | float:
    """Barron's power transform ``t = 1 - (1 - d/(lam*c))^(lam+1)``: depth -> t in [0, 1].

    Precise at both ends: relative precision for tiny depths, and ``t < 1`` for every
    finite depth the float type can tell apart from infinity (float64 depth 1e9 gives
    ``1 - 1e-16``). Differentiable through autograd for torch input.

    Args:
        depth: depth ``>= 0`` (``+inf`` allowed), any shape: a torch tensor (any device), a
            NumPy array or a Python number.
        lam: power-transform exponent, finite and ``< -1``.
        c: power-transform scale, finite and ``> 0``.

    Returns:
        ``t`` of the input's shape in [0, 1] (``+inf`` maps to 1): float dtypes are kept,
        integers become float32, a number gives a ``float``.

    Example::

        >>> power_transform(10.0)
        0.75
        >>> power_transform(torch.tensor([0.0, 30.0, math.inf]))
        tensor([0.0000, 0.9375, 1.0000])
    """
    lam, c = chk.power_params(lam, c)
    tensor, back = chk.elementwise_input(depth, "depth")
    return back(ref_depth.power_transform(tensor, lam, c))


def inverse_power_transform(t: Array | float, *, lam: float = DEFAULT_LAM,
                            c: float = DEFAULT_C) -> Array | float:
    """The inverse power transform ``d = lam*c*(1 - (1 - t)^(1/(lam+1)))``: t -> depth.

    Args:
        t: walk positions, any shape, clamped to [0, 1]: a torch tensor (any device), a
            NumPy array or a Python number.
        lam: power-transform exponent, finite and ``< -1``.
        c: power-transform scale, finite and ``> 0``.

    Returns:
        depth of the input's shape in [0, inf] (``t == 1`` gives ``+inf``): float dtypes
        are kept, integers become float32, a number gives a ``float``.

    Example::

        >>> inverse_power_transform(0.75)
        10.0
    """
    lam, c = chk.power_params(lam, c)
    tensor, back = chk.elementwise_input(t, "t")
    return back(ref_depth.inverse_power_transform(tensor.clamp(0.0, 1.0), lam, c))


def _flat_grid(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(N, H, W) for a ``(..., H, W)`` shape; fewer than 2 dims count as one row."""
    if len(shape) >= 2:
        return math.prod(shape[:-2]), shape[-2], shape[-1]
    return 1, 1, math.prod(shape)


def _encoded_output(grid_input: torch.Tensor, dtype: torch.dtype, layout: str, numpy_io: bool):
    """An RGB output for a ``(..., H, W)`` input, in ``layout``, and its kernel view."""
    layout = chk.encoded_layout(layout)
    shape = tuple(grid_input.shape)
    if layout == "chw" and len(shape) < 2:
        raise ValueError(f"layout='chw' needs an input of shape (..., H, W), got {shape}")
    out_shape = shape + (3,) if layout == "hwc" else shape[:-2] + (3,) + shape[-2:]
    kernel_shape = _flat_grid(shape) + (3,)
    return _output(None, out_shape, dtype, grid_input.device, numpy_io, kernel_shape,
                   channels_first=layout == "chw")


def encode_depth(depth: Array, *, lam: float = DEFAULT_LAM, c: float = DEFAULT_C,
                 dtype: DType = torch.uint8, layout: str = "hwc", negative: str = "raise",
                 backend: str = "auto") -> Array:
    """Metric depth -> cube-walk RGB: ``hilbert_walk(power_transform(depth))``
    (docs/format.md, Depth).

    Args:
        depth: depth of shape ``(*, H, W)`` (fewer dims count as one row), finite and
            ``>= 0`` or ``+inf``; NaN raises ``ValueError``. A torch tensor on any device
            or a NumPy array; integers are read as float32.
        lam: power-transform exponent, finite and ``< -1``.
        c: power-transform scale, finite and ``> 0``.
        dtype: output dtype: uint8 (0..255, rounded to nearest; the round trip through
            :func:`decode_depth` moves ``t`` by at most ``1/(2*255*7)``) or a float dtype
            (0..1; float64 keeps even very large finite depths off white).
        layout: ``"hwc"`` for ``(*, H, W, 3)`` or ``"chw"`` for ``(*, 3, H, W)``.
        negative: ``"raise"`` (``ValueError`` on negative depth) or ``"clamp"`` (encode it
            as 0).
        backend: ``"auto"`` or a name from :func:`available_backends`.

    Returns:
        RGB of ``dtype`` in ``layout``, on the input's device (NumPy in, NumPy out);
        ``+inf`` encodes as white.

    Example::

        >>> encode_depth(torch.tensor([[0.0, 10.0, math.inf]]))
        tensor([[[  0,   0,   0],
                 [ 64,   0, 255],
                 [255, 255, 255]]], dtype=torch.uint8)
    """
    _refuse_transforms("encode_depth")
    lam, c = chk.power_params(lam, c)
    dtype = chk.rgb_dtype(dtype)
    tensor, numpy_io = chk.real_tensor(depth, "depth")
    tensor = chk.encodable_depth(tensor, negative)
    _, op = _select("encode_depth", backend, tensor,
                    dtype.is_floating_point and _needs_grad(tensor))
    rgb = _encoded_output(tensor, dtype, layout, numpy_io)
    if tensor.numel():
        # detach: a uint8 result has no gradient, and numpy() refuses a tensor in a graph
        op(tensor.detach().reshape(_flat_grid(tuple(tensor.shape))), rgb.kernel, lam, c)
    return rgb.finish(numpy_io)


def hilbert_walk(t: Array, *, dtype: DType = torch.float32, backend: str = "auto") -> Array:
    """The RGB colour of the cube walk at positions ``t``: the primitive for users with
    their own depth normalisation (docs/format.md, Depth).

    Args:
        t: walk positions, any shape, clamped to [0, 1]. A torch tensor on any device or a
            NumPy array; integers are read as float32.
        dtype: output dtype: a float dtype (0..1; NaN ``t`` gives NaN) or uint8 (0..255,
            rounded to nearest; NaN raises ``ValueError``).
        backend: ``"auto"`` or a name from :func:`available_backends`.

    Returns:
        RGB of shape ``(*t.shape, 3)`` and ``dtype``, on the input's device (NumPy in,
        NumPy out).

    Example::

        >>> hilbert_walk(torch.tensor([0.0, 0.5, 1.0]))
        tensor([[0.0000, 0.0000, 0.0000],
                [0.0000, 1.0000, 0.5000],
                [1.0000, 1.0000, 1.0000]])
    """
    _refuse_transforms("hilbert_walk")
    dtype = chk.rgb_dtype(dtype)
    tensor, numpy_io = chk.real_tensor(t, "t")
    if dtype == torch.uint8 and tensor.numel() and torch.isnan(tensor.min()):
        raise ValueError("t contains NaN, which has no uint8 colour")
    _, op = _select("hilbert_walk", backend, tensor,
                    dtype.is_floating_point and _needs_grad(tensor))
    rgb = _encoded_output(tensor, dtype, "hwc", numpy_io)
    if tensor.numel():
        op(tensor.detach().reshape(_flat_grid(tuple(tensor.shape))), rgb.kernel)  # as above
    return rgb.finish(numpy_io)


# --------------------------------------------------------------------------- normals


def decode_normals(rgb: Array, *, layout: str = "auto", convention: str = "opengl",
                   eps: float = 1e-6, return_norm: bool = False, out_dtype: DType | None = None,
                   backend: str = "auto",
                   out: Array | None = None) -> Array | tuple[Array, Array]:
    """Unit surface normals from linearly mapped RGB: ``n = 2p/255 - 1``, then ``n/|n|``
    (docs/format.md, Normals).

    Within 1e-6 of the float64 value for every uint8 colour (the exact integer vector
    ``2p - 255`` is normalised, so nothing cancels near grey).

    Args:
        rgb: image of shape ``(*, H, W, 3)`` or ``(*, 3, H, W)``: uint8 (0..255) or
            float16/bfloat16/float32/float64 in [0, 1] (clamped); a torch tensor on any
            device with any strides, or a NumPy array.
        layout: ``"hwc"``, ``"chw"`` or ``"auto"``.
        convention: ``"opengl"`` (+x right, +y up, +z toward the camera) or ``"opencv"``
            (+x right, +y down, +z forward: y and z negated).
        eps: pixels with ``|n| < eps`` (mid-grey) give the zero vector.
        return_norm: also return ``|n|`` so callers can mask pixels that were not normals.
        out_dtype: float32 (default), float16, bfloat16 or float64.
        backend: ``"auto"`` or a name from :func:`available_backends`.
        out: optional preallocated normals output (shape, dtype and device of the result);
            not with an input that requires grad.

    Returns:
        normals of the input's shape and layout, ``out_dtype``, components in [-1, 1] and
        unit length (or zero), on the input's device (NumPy in, NumPy out). With
        ``return_norm=True`` a tuple ``(normals, norm)``, norm ``(*, H, W)`` float32 in
        [0, sqrt(3)]. A NaN channel gives NaN. Both are differentiable for a float input
        that requires grad, on every backend: the Jacobian of ``n/|n|`` (and of ``|n|``)
        after the affine map, zero below ``eps``, for NaN pixels and clamped channels
        (docs/format.md, Gradients).

    Example::

        >>> rgb = torch.tensor([[[255, 128, 128], [128, 128, 0]]], dtype=torch.uint8)
        >>> decode_normals(rgb)
        tensor([[[ 1.0000,  0.0039,  0.0039],
                 [ 0.0039,  0.0039, -1.0000]]])
    """
    flip_yz = chk.flip_yz(convention)
    eps = chk.optional_positive(eps, "eps")
    out_dtype = chk.normals_dtype(out_dtype)
    img = _image(rgb, layout)
    needs_grad = _needs_grad(img.tensor)
    functional = needs_grad or _transformed()
    _refuse_out_with_grad(out, functional)
    chosen, op = _select("decode_normals", backend, img.tensor, needs_grad)
    if functional:
        return _differentiable_normals(img, chosen.name, flip_yz, eps, out_dtype, return_norm)
    normals = _output(out, tuple(img.tensor.shape), out_dtype, img.tensor.device, img.numpy_io,
                      tuple(img.view.shape), channels_first=img.layout == "chw")
    norm = _scalar_output(img, torch.float32) if return_norm else None
    if not img.empty:
        op(img.view, normals.kernel, norm.kernel if norm else None, flip_yz, eps)
    result = normals.finish(img.numpy_io, out)
    if norm is None:
        return result
    return result, norm.finish(img.numpy_io)


def _differentiable_normals(img: Image, backend: str, flip_yz: bool, eps: float,
                            out_dtype: torch.dtype, return_norm: bool):
    """decode_normals as new tensors with a backward (the functional op of ``_autograd``)."""
    normals, norm = _autograd.function("decode_normals").apply(img.view, flip_yz, eps, out_dtype,
                                                  return_norm, backend)
    normals = normals.reshape(img.batch + img.hw + (3,))
    if img.layout == "chw":
        normals = normals.movedim(-1, -3)
    return (normals, _new_result(img, norm)) if return_norm else normals


def encode_normals(normals: Array, *, convention: str = "opengl", dtype: DType = torch.uint8,
                   layout: str = "hwc", backend: str = "auto") -> Array:
    """Normals -> RGB: ``p = round(255*(n+1)/2)`` per channel (docs/format.md, Normals).

    Normals are encoded as given (not renormalised); components outside [-1, 1] clamp.

    Args:
        normals: vectors of shape ``(*, 3)`` (``layout="hwc"``) or ``(*, 3, H, W)``
            (``"chw"``), any real dtype; NaN raises ``ValueError``. A torch tensor on any
            device or a NumPy array.
        convention: ``"opengl"`` or ``"opencv"`` (y and z negated), as in
            :func:`decode_normals`.
        dtype: output dtype: uint8 (0..255) or a float dtype (``(n+1)/2`` in [0, 1]).
        layout: ``"hwc"`` or ``"chw"``: where the 3 components are, in and out.
        backend: ``"auto"`` or a name from :func:`available_backends`.

    Returns:
        RGB of the input's shape and layout and ``dtype``, on the input's device (NumPy
        in, NumPy out).

    Example::

        >>> encode_normals(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]))
        tensor([[255, 128, 128],
                [128, 128,   0]], dtype=torch.uint8)
    """
    _refuse_transforms("encode_normals")
    flip_yz = chk.flip_yz(convention)
    dtype = chk.rgb_dtype(dtype)
    tensor, numpy_io = chk.real_tensor(normals, "normals")
    vectors = chk.encodable_normals(tensor, layout)
    grid = _flat_grid(tuple(vectors.shape[:-1]))
    _, op = _select("encode_normals", backend, tensor,
                    dtype.is_floating_point and _needs_grad(tensor))
    rgb = _output(None, tuple(tensor.shape), dtype, tensor.device, numpy_io, grid + (3,),
                  channels_first=layout == "chw")
    if tensor.numel():
        op(vectors.detach().reshape(grid + (3,)), rgb.kernel, flip_yz)  # as encode_depth
    return rgb.finish(numpy_io)


# --------------------------------------------------------------------------- segmentation


def _palette_for(rgb_dtype: torch.dtype, palette: Any, device: torch.device):
    """(K, 3) palette in the working dtype, and whether all its values are integers."""
    tensor = chk.check_palette(palette, device)
    as_work = tensor.to(work_dtype(rgb_dtype)).contiguous()
    if torch.compiler.is_compiling():
        # Under torch.compile only the dtype is known: pass an integer palette there to get
        # the exact integer threshold for max_distance.
        return as_work, not tensor.is_floating_point()
    wide = tensor.to(torch.float64)
    integral = bool((wide == wide.round()).all())
    return as_work, integral


_MAX_COLOURS = 65535  # palette entries the kernels take, the ignore colour included


def _ignore_colour(value: Any) -> list[float]:
    """An ignore colour as 3 Python floats in 0..255 (no tensor, so no device sync)."""
    try:
        values = [float(v) for v in (value.tolist() if hasattr(value, "tolist") else value)]
    except (TypeError, ValueError):
        values = []
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):  # NaN fails too
        raise ValueError(f"ignore_color must be 3 values in 0..255, got {value!r}")
    return values


def _with_ignore_colour(colours: torch.Tensor, ignore_color: list[float]) -> torch.Tensor:
    """The (K, 3) class colours with the ignore colour appended as entry K.

    Integer colours stay integer (so uint8 decoding stays exact and the integer
    ``max_distance`` threshold still applies under torch.compile)."""
    integral = all(v.is_integer() for v in ignore_color)
    dtype = torch.promote_types(colours.dtype, torch.int64 if integral else torch.float64)
    extra = torch.tensor([ignore_color], dtype=dtype, device=colours.device)
    return torch.cat([colours.to(dtype), extra])


def decode_segmentation(rgb: Array, palette: Any, *, max_distance: float | None = None,
                        ignore_index: int | None = None, layout: str = "auto",
                        out_dtype: DType | None = None, return_distance: bool = False,
                        backend: str = "auto", out: Array | None = None,
                        ignore_color: Sequence[float] | None = None,
                        ) -> Array | tuple[Array, Array]:
    """Index of the nearest palette colour for every pixel (docs/format.md, Segmentation).

    Squared Euclidean distance in 0..255 units; ties go to the lowest index. Exact (the
    same labels on every backend) for uint8 images with integer palettes. A palette's
    ignore colour, when it has one, decodes to ``ignore_index``: it is matched as palette
    entry K, after every class, so a tie with a class colour goes to the class, and
    ``encode_segmentation`` -> ``decode_segmentation`` round-trips every label.

    Args:
        rgb: image of shape ``(*, H, W, 3)`` or ``(*, 3, H, W)``: uint8 (0..255) or
            float16/bfloat16/float32/float64 in [0, 1] (clamped); a torch tensor on any
            device with any strides, or a NumPy array.
        palette: ``(K, 3)`` colours in 0..255 units, ``1 <= K <= 65535``: a tensor, array
            or nested sequence of numbers, or a :class:`vbkernels.palettes.Palette`
            (which brings its ignore index and ignore colour as defaults).
        max_distance: if given (``>= 0``), a pixel whose nearest colour is farther than
            this (0..255 units; exactly this far is kept) gets ``ignore_index``.
        ignore_index: label of ignored and NaN pixels; must not be a valid class index.
            ``None``: the Palette's, else 255. Explicit arguments win over the Palette's.
        layout: ``"hwc"``, ``"chw"`` or ``"auto"``.
        out_dtype: label dtype: int64 (default), int32, int16 or uint8; ``ValueError`` if
            the labels (and ``ignore_index``, when it can occur) do not fit.
        return_distance: also return the distance to the chosen colour.
        backend: ``"auto"`` or a name from :func:`available_backends`.
        out: optional preallocated label output (shape, dtype and device of the result).
        ignore_color: 3 values in 0..255 that decode to ``ignore_index`` (``None``: the
            Palette's, else no ignore colour). Pass ``palette.colors`` to decode a Palette
            without it. A palette with an ignore colour holds at most 65534 classes.

    Returns:
        labels of shape ``(*, H, W)`` and ``out_dtype``, in ``[0, K)`` or ``ignore_index``,
        on the input's device (NumPy in, NumPy out). With ``return_distance=True`` a tuple
        ``(labels, distance)``, distance ``(*, H, W)`` float32 in 0..255 units.

    Example::

        >>> rgb = torch.tensor([[[250, 5, 5], [3, 3, 3]]], dtype=torch.uint8)
        >>> decode_segmentation(rgb, [[0, 0, 0], [255, 0, 0]])
        tensor([[1, 0]])
    """
    _refuse_transforms("decode_segmentation")
    img = _image(rgb, layout)
    colours, ignore_index, ignore_color = palette_arguments(palette, ignore_index, ignore_color)
    if ignore_color is not None:
        checked = chk.check_palette(colours, img.tensor.device)
        if checked.shape[0] == _MAX_COLOURS:
            raise ValueError(f"a palette with an ignore_color holds at most "
                             f"{_MAX_COLOURS - 1} class colours, got {checked.shape[0]}")
        colours = _with_ignore_colour(checked, _ignore_colour(ignore_color))
    palette_w, integral = _palette_for(img.tensor.dtype, colours, img.tensor.device)
    k = palette_w.shape[0] - (ignore_color is not None)  # classes, without the ignore entry
    ignore_index = _check_ignore_index(ignore_index, k)
    max_distance = chk.optional_positive(max_distance, "max_distance")
    max_dist2 = None
    if max_distance is not None:
        max_dist2 = max_distance * max_distance
        if img.tensor.dtype == torch.uint8 and integral:
            # Integer distances: d2 > r^2 <=> d2 > floor(r^2), exact in any float width.
            max_dist2 = float(math.floor(max_dist2))
    out_dtype = torch.int64 if out_dtype is None else _torch_dtype(out_dtype, "out_dtype")
    if out_dtype not in chk.LABEL_DTYPES:
        raise ValueError(f"out_dtype must be uint8, int16, int32 or int64, got {out_dtype}")
    can_ignore = (max_distance is not None or img.tensor.is_floating_point()
                  or ignore_color is not None)
    for needed in [k - 1] + ([ignore_index] if can_ignore else []):
        if not chk.int_fits(needed, out_dtype):
            raise ValueError(f"labels up to {needed} do not fit out_dtype={out_dtype}")
    _, op = _select("decode_segmentation", backend, img.tensor,
                    return_distance and _needs_grad(img.tensor))
    labels = _scalar_output(img, out_dtype, out)
    distance = _scalar_output(img, torch.float32) if return_distance else None
    if not img.empty:
        # The ignore colour decodes as label K, then becomes ignore_index. When K does not
        # fit out_dtype (uint8 or int16 then, as K < 65535 fits int32) decode into an
        # int32 scratch; ignore_index fits out_dtype, checked above, so int32 too.
        wide = ignore_color is not None and not chk.int_fits(k, out_dtype)
        target = labels.kernel
        if wide:
            target = torch.empty(labels.kernel.shape, dtype=torch.int32,
                                 device=labels.kernel.device)
        # detach: labels have no gradient (a wanted distance gradient was refused above)
        op(img.view.detach(), palette_w, target, distance.kernel if distance else None,
           max_dist2, ignore_index)
        if wide:
            labels.kernel.copy_(target.masked_fill(target == k, ignore_index))
        elif ignore_color is not None and ignore_index != k:
            labels.kernel.masked_fill_(labels.kernel == k, ignore_index)
    result = labels.finish(img.numpy_io, out)
    if distance is None:
        return result
    return result, distance.finish(img.numpy_io)


def segmentation_logits(rgb: Array, palette: Any, *, temperature: float = 1.0,
                        layout: str = "auto", backend: str = "auto") -> Array:
    """Per-class logits ``-dist²/temperature`` for training toward palette colours
    (docs/format.md, Segmentation and Gradients).

    ``dist`` is the Euclidean distance in 0..255 units from each pixel to each palette
    colour, so ``softmax`` over the class dimension is a soft :func:`decode_segmentation`
    (its argmax is the hard label, ties aside) and ``torch.nn.functional.cross_entropy``
    on these logits trains colours toward the right entry. Differentiable with respect to a
    float image that requires grad; the torch backend also with respect to a float palette
    tensor that requires grad. Memory: one ``(N, K, H, W)`` tensor, so keep ``K`` modest.

    Args:
        rgb: image of shape ``(*, H, W, 3)`` or ``(*, 3, H, W)``: uint8 (0..255) or
            float16/bfloat16/float32/float64 in [0, 1] (clamped; a clamped channel gets
            zero gradient); a torch tensor on any device, or a NumPy array.
        palette: ``(K, 3)`` colours in 0..255 units, ``1 <= K <= 65535``, or a
            :class:`vbkernels.palettes.Palette` (its ignore colour is not a class and gets no
            logit: pass ``ignore_index`` to the loss instead).
        temperature: ``> 0``, in squared 0..255 units: about the squared colour distance
            over which a class's probability falls by a factor ``e``. ``1.0`` is nearly a
            hard decision; a value near the squared distance between palette colours
            (hundreds to thousands) gives smoother training gradients.
        layout: ``"hwc"``, ``"chw"`` or ``"auto"``.
        backend: ``"torch"`` (torch ops, any device), ``"triton"`` (one fused kernel for the
            forward and one for the backward; CUDA tensors, or CPU ones under the Triton
            interpreter) or ``"auto"``: Triton for CUDA tensors outside ``torch.compile``
            unless the palette requires grad, else torch.

    Returns:
        logits of shape ``(*, K, H, W)``: the class dimension goes where channels-first
        images keep theirs, whatever the input's layout, so an ``(N, H, W, 3)`` batch gives
        the ``(N, K, H, W)`` that ``cross_entropy`` takes (flatten other leading dims
        first). float64 for float64 input, else float32, on the input's device (NumPy in,
        NumPy out). A NaN pixel gives NaN logits and zero gradient.

    Example::

        >>> rgb = torch.tensor([[[[0.0, 0.0, 0.2]]]])  # (N, H, W, 3) = (1, 1, 1, 3)
        >>> segmentation_logits(rgb, [[0, 0, 0], [0, 0, 255]], temperature=51.0 ** 2)
        tensor([[[[ -1.]],
        <BLANKLINE>
                 [[-16.]]]])
    """
    img = _image(rgb, layout)
    temperature = _temperature(temperature)
    if temperature is None:
        raise TypeError("temperature must be a real number > 0, got None")
    colours, _, _ = palette_arguments(palette)
    colours = chk.check_palette(colours, img.tensor.device)
    logits = _logits_function(backend, img.tensor, colours)(img.view, colours, temperature)
    logits = logits.reshape(img.batch + tuple(logits.shape[1:]))
    return logits.numpy() if img.numpy_io else logits


def _logits_function(backend: Any, rgb: torch.Tensor, palette: torch.Tensor) -> Callable:
    """The torch reference or the fused Triton forward/backward for segmentation_logits."""
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    if backend == "auto":
        fused = (rgb.device.type == "cuda" and not torch.compiler.is_compiling()
                 and not palette.requires_grad and _triton_runs(rgb))
        backend = "triton" if fused else "torch"
    if backend == "torch":
        return ref_grad.segmentation_logits
    if backend == "triton":
        if not _triton_runs(rgb):
            raise RuntimeError(
                f"backend 'triton' cannot run segmentation_logits on {rgb.dtype} {rgb.device} "
                "tensors here (set TRITON_INTERPRET=1 before import for CPU tensors)")
        if palette.requires_grad:
            raise RuntimeError("backend 'triton' differentiates segmentation_logits with respect "
                               "to the image only; use backend='torch' for a palette that "
                               "requires grad")
        from .triton.grad import SegmentationLogits

        return SegmentationLogits.apply
    if backend in BACKEND_NAMES:
        raise RuntimeError(f"backend {backend!r} does not implement segmentation_logits; "
                           "use 'torch' or 'triton'")
    raise ValueError(f"backend must be one of {('auto',) + BACKEND_NAMES}, got {backend!r}")


def _triton_runs(rgb: torch.Tensor) -> bool:
    try:
        return load_backend("triton").runs(rgb.device, rgb.dtype)
    except BackendUnavailable:
        return False


def encode_segmentation(labels: Array, palette: Any, *,
                        ignore_color: Sequence[float] | None = None, layout: str = "hwc",
                        backend: str = "auto") -> Array:
    """Labels -> palette colours (docs/format.md, Segmentation).

    Args:
        labels: integer labels of shape ``(*, H, W)`` (fewer dims count as one row): a
            torch tensor on any device or a NumPy array.
        palette: ``(K, 3)`` colours in 0..255 units, ``1 <= K <= 65535`` (fractional values
            are rounded to the nearest uint8 colour), or a :class:`vbkernels.palettes.Palette`.
        ignore_color: 3 values in 0..255 painted where a label is outside ``[0, K)`` (an
            ignore index, for instance); ``None``: the Palette's, else black.
        layout: ``"hwc"`` for ``(*, H, W, 3)`` or ``"chw"`` for ``(*, 3, H, W)``.
        backend: ``"auto"`` or a name from :func:`available_backends`.

    Returns:
        uint8 RGB (0..255) in ``layout``, on the input's device (NumPy in, NumPy out).

    Example::

        >>> encode_segmentation(torch.tensor([[1, 0, 255]]), [[0, 0, 0], [255, 0, 0]])
        tensor([[[255,   0,   0],
                 [  0,   0,   0],
                 [  0,   0,   0]]], dtype=torch.uint8)
    """
    palette, _, ignore_color = palette_arguments(palette, None, ignore_color,
                                                 default_color=(0, 0, 0))
    _refuse_transforms("encode_segmentation")
    tensor, numpy_io = chk.as_tensor(labels, "labels")
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got {tensor.dtype}")
    colours = chk.check_palette(palette, tensor.device)
    colours = colours.to(torch.float64).round().to(torch.uint8).contiguous()
    ignore = torch.as_tensor(ignore_color, dtype=torch.float64).reshape(-1)
    if (ignore.numel() != 3 or not torch.isfinite(ignore).all() or ignore.min() < 0
            or ignore.max() > 255):
        raise ValueError(f"ignore_color must be 3 values in 0..255, got {ignore_color!r}")
    ignore = ignore.round().to(torch.uint8).to(tensor.device)
    _, op = _select("encode_segmentation", backend, tensor)
    rgb = _encoded_output(tensor, torch.uint8, layout, numpy_io)
    if tensor.numel():
        op(tensor.reshape(_flat_grid(tuple(tensor.shape))), colours, rgb.kernel, ignore)
    return rgb.finish(numpy_io)
