"""The public functions of SPEC §5: validate, allocate, dispatch, return.

Each function turns its input into the canonical (N, H, W, 3) view (``_checks``), picks a
backend (``_dispatch``), allocates or checks the output and calls the backend's kernel op,
which writes the output in place. NumPy in gives NumPy out: arrays are wrapped as tensors
without a copy and the outputs are handed back as arrays sharing the same memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from . import _checks as chk
from ._dispatch import Backend, select
from .palettes import palette_arguments
from .reference import depth as ref_depth
from .reference._common import work_dtype

DEFAULT_LAM = -3.0
DEFAULT_C = 10.0 / 3.0


@dataclass
class _Image:
    """A validated input image and everything the decoders derive from it."""

    tensor: torch.Tensor  # the caller's tensor (or the tensor wrapping their array)
    view: torch.Tensor  # (N, H, W, 3), any strides
    batch: tuple[int, ...]
    layout: str
    numpy_io: bool

    @property
    def hw(self) -> tuple[int, ...]:
        return tuple(self.view.shape[1:3])

    @property
    def empty(self) -> bool:
        return self.view.numel() == 0


def _image(rgb: Any, layout: str) -> _Image:
    tensor, numpy_io = chk.as_tensor(rgb, "rgb")
    chk.check_image_dtype(tensor)
    layout = chk.resolve_layout(tuple(tensor.shape), layout)
    view, batch = chk.image_view(tensor, layout)
    return _Image(tensor, view, batch, layout, numpy_io)


def _torch_dtype(dtype: Any, name: str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return getattr(torch, np.dtype(dtype).name)
    except (TypeError, AttributeError):
        raise TypeError(f"{name} must be a torch or numpy dtype, got {dtype!r}") from None


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


def _scalar_output(img: _Image, dtype: torch.dtype, out: Any = None) -> _Output:
    shape = img.batch + img.hw
    return _output(out, shape, dtype, img.tensor.device, img.numpy_io, tuple(img.view.shape[:3]))


def _select(op: str, backend: str, tensor: torch.Tensor) -> tuple[Backend, Callable]:
    return select(op, backend, tensor.device, tensor.dtype)


def _t_dtype(img: _Image, chosen: Backend) -> torch.dtype:
    wide = img.tensor.dtype == torch.float64 and chosen.float64_outputs
    return torch.float64 if wide else torch.float32


# --------------------------------------------------------------------------- depth


def hilbert_project(rgb, *, layout="auto", backend="auto", out=None):
    """Position ``t`` in [0, 1] of each pixel on the cube walk (SPEC §2).

    rgb: ``(..., H, W, 3)`` or ``(..., 3, H, W)``; uint8 (0..255) or float (0..1, clamped).
    Returns ``(..., H, W)`` float32 (float64 for float64 input on the torch and numpy
    backends). uint8 input picks the segment exactly (integer distances, ties to the lowest
    segment); a NaN channel gives NaN.
    """
    img = _image(rgb, layout)
    chosen, op = _select("hilbert_project", backend, img.tensor)
    t = _scalar_output(img, _t_dtype(img, chosen), out)
    if not img.empty:
        op(img.view, t.kernel)
    return t.finish(img.numpy_io, out)


def decode_depth(rgb, *, lam=DEFAULT_LAM, c=DEFAULT_C, layout="auto", max_depth=None,
                 return_distance=False, backend="auto", out=None):
    """Metric depth from cube-walk RGB (SPEC §2): projection, then inverse power transform.

    rgb: ``(..., H, W, 3)`` or ``(..., 3, H, W)``, uint8 or float in [0, 1].
    Returns depth ``(..., H, W)`` float32 (float64 for float64 input on torch/numpy), in
    metres for the default ``lam=-3, c=10/3``; white decodes to ``+inf`` unless
    ``max_depth`` clamps it. With ``return_distance=True`` also returns each pixel's
    Euclidean distance to the walk in 0..255 units (float32): a confidence signal.
    ``out``: optional preallocated depth output to write into and return.
    """
    lam, c = chk.power_params(lam, c)
    max_depth = chk.optional_positive(max_depth, "max_depth")
    img = _image(rgb, layout)
    chosen, op = _select("decode_depth", backend, img.tensor)
    depth = _scalar_output(img, _t_dtype(img, chosen), out)
    distance = _scalar_output(img, torch.float32) if return_distance else None
    if not img.empty:
        op(img.view, depth.kernel, distance.kernel if distance else None, lam, c, max_depth)
    result = depth.finish(img.numpy_io, out)
    if distance is None:
        return result
    return result, distance.finish(img.numpy_io)


def _elementwise_input(x: Any, name: str):
    """Tensor, array or Python number -> (float tensor, how to hand the result back)."""
    if isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool):
        return torch.tensor(float(x), dtype=torch.float64), float
    tensor, numpy_io = chk.as_tensor(x, name)
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"{name} must be real-valued, got {tensor.dtype}")
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    if numpy_io:
        return tensor, lambda t: t.numpy()
    return tensor, lambda t: t


def power_transform(depth, *, lam=DEFAULT_LAM, c=DEFAULT_C):
    """Barron's power transform ``t = 1 - (1 - d/(lam*c))^(lam+1)``: depth (m) -> t in [0, 1].

    Elementwise on a tensor, array or number; float dtypes are kept (integers become
    float32); ``+inf`` maps to 1. Differentiable through autograd for torch input.
    """
    lam, c = chk.power_params(lam, c)
    tensor, back = _elementwise_input(depth, "depth")
    return back(ref_depth.power_transform(tensor, lam, c))


def inverse_power_transform(t, *, lam=DEFAULT_LAM, c=DEFAULT_C):
    """``d = lam*c*(1 - (1 - t)^(1/(lam+1)))``: t in [0, 1] (clamped) -> depth; ``t == 1`` -> inf."""
    lam, c = chk.power_params(lam, c)
    tensor, back = _elementwise_input(t, "t")
    return back(ref_depth.inverse_power_transform(tensor.clamp(0.0, 1.0), lam, c))


def _flat_grid(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(N, H, W) for a ``(..., H, W)`` shape; fewer than 2 dims count as one row."""
    if len(shape) >= 2:
        return math.prod(shape[:-2]), shape[-2], shape[-1]
    return 1, 1, math.prod(shape)


def _encoded_output(grid_input: torch.Tensor, dtype: torch.dtype, layout: str, numpy_io: bool):
    """An RGB output for a ``(..., H, W)`` input, in ``layout``, and its kernel view."""
    if layout not in ("hwc", "chw"):
        raise ValueError(f"layout must be 'hwc' or 'chw', got {layout!r}")
    shape = tuple(grid_input.shape)
    if layout == "chw" and len(shape) < 2:
        raise ValueError(f"layout='chw' needs an input of shape (..., H, W), got {shape}")
    out_shape = shape + (3,) if layout == "hwc" else shape[:-2] + (3,) + shape[-2:]
    kernel_shape = _flat_grid(shape) + (3,)
    return _output(None, out_shape, dtype, grid_input.device, numpy_io, kernel_shape,
                   channels_first=layout == "chw")


def _rgb_dtype(dtype: Any) -> torch.dtype:
    dtype = _torch_dtype(dtype, "dtype")
    if dtype != torch.uint8 and dtype not in chk.FLOAT_DTYPES:
        raise TypeError(f"dtype must be uint8 (0..255) or a float dtype (0..1), got {dtype}")
    return dtype


def _real_tensor(x: Any, name: str) -> tuple[torch.Tensor, bool]:
    tensor, numpy_io = chk.as_tensor(x, name)
    if not tensor.is_floating_point():
        if tensor.dtype == torch.bool or tensor.is_complex():
            raise TypeError(f"{name} must be real-valued, got {tensor.dtype}")
        tensor = tensor.to(torch.float32)
    return tensor, numpy_io


def encode_depth(depth, *, lam=DEFAULT_LAM, c=DEFAULT_C, dtype=torch.uint8, layout="hwc",
                 negative="raise", backend="auto"):
    """Metric depth ``(..., H, W)`` -> cube-walk RGB ``(..., H, W, 3)`` (or ``(..., 3, H, W)``).

    uint8 output rounds to nearest (round trip ``|t_decoded - t| <= 1/(2*255*7)``); a float
    dtype gives values in [0, 1]. ``+inf`` encodes as white. Negative depth raises
    ``ValueError`` unless ``negative="clamp"`` (then it encodes as 0); NaN always raises.
    """
    lam, c = chk.power_params(lam, c)
    dtype = _rgb_dtype(dtype)
    if negative not in ("raise", "clamp"):
        raise ValueError(f"negative must be 'raise' or 'clamp', got {negative!r}")
    tensor, numpy_io = _real_tensor(depth, "depth")
    # One reduction finds both (min propagates NaN); 25x cheaper than isnan().any() plus
    # (tensor < 0).any() on a 1080p frame, and no clamped copy when nothing is negative.
    low = tensor.min() if tensor.numel() else torch.zeros(())
    if torch.isnan(low):
        raise ValueError("depth contains NaN, which has no colour on the walk")
    if low < 0:
        if negative != "clamp":
            raise ValueError("depth must be >= 0 (pass negative='clamp' to encode negatives as 0)")
        tensor = tensor.clamp_min(0.0)
    chosen, op = _select("encode_depth", backend, tensor)
    rgb = _encoded_output(tensor, dtype, layout, numpy_io)
    if tensor.numel():
        op(tensor.reshape(_flat_grid(tuple(tensor.shape))), rgb.kernel, lam, c)
    return rgb.finish(numpy_io)


def hilbert_walk(t, *, dtype=torch.float32, backend="auto"):
    """RGB on the cube walk at positions ``t`` (any shape, clamped to [0, 1]) -> ``(..., 3)``.

    The primitive for users with their own depth normalisation. A float dtype gives values
    in [0, 1] (NaN t gives NaN); uint8 gives 0..255 rounded to nearest (NaN raises).
    """
    dtype = _rgb_dtype(dtype)
    tensor, numpy_io = _real_tensor(t, "t")
    if dtype == torch.uint8 and tensor.numel() and torch.isnan(tensor.min()):
        raise ValueError("t contains NaN, which has no uint8 colour")
    chosen, op = _select("hilbert_walk", backend, tensor)
    rgb = _encoded_output(tensor, dtype, "hwc", numpy_io)
    if tensor.numel():
        op(tensor.reshape(_flat_grid(tuple(tensor.shape))), rgb.kernel)
    return rgb.finish(numpy_io)


# --------------------------------------------------------------------------- normals

CONVENTIONS = ("opengl", "opencv")


def _check_convention(convention: Any) -> bool:
    """True when y and z must be negated (OpenCV camera axes)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    return convention == "opencv"


def decode_normals(rgb, *, layout="auto", convention="opengl", eps=1e-6, return_norm=False,
                   out_dtype=None, backend="auto", out=None):
    """Unit surface normals from linearly mapped RGB (SPEC §3): ``n = 2p/255 - 1``, ``n/|n|``.

    Output has the input's shape and layout, float32 unless ``out_dtype`` asks for float16,
    bfloat16 or float64. ``convention="opengl"`` (+x right, +y up, +z toward the camera) or
    ``"opencv"`` (y and z negated). Pixels with ``|n| < eps`` give the zero vector; with
    ``return_norm=True`` also returns ``|n|`` (float32) so callers can mask them.
    """
    flip_yz = _check_convention(convention)
    eps = chk.optional_positive(eps, "eps")
    out_dtype = torch.float32 if out_dtype is None else _torch_dtype(out_dtype, "out_dtype")
    if out_dtype not in chk.FLOAT_DTYPES:
        raise ValueError(f"out_dtype must be float16, bfloat16, float32 or float64, got {out_dtype}")
    img = _image(rgb, layout)
    _, op = _select("decode_normals", backend, img.tensor)
    normals = _output(out, tuple(img.tensor.shape), out_dtype, img.tensor.device, img.numpy_io,
                      tuple(img.view.shape), channels_first=img.layout == "chw")
    norm = _scalar_output(img, torch.float32) if return_norm else None
    if not img.empty:
        op(img.view, normals.kernel, norm.kernel if norm else None, flip_yz, eps)
    result = normals.finish(img.numpy_io, out)
    if norm is None:
        return result
    return result, norm.finish(img.numpy_io)


def encode_normals(normals, *, convention="opengl", dtype=torch.uint8, layout="hwc",
                   backend="auto"):
    """Normals ``(..., 3)`` (``layout="hwc"``) or ``(..., 3, H, W)`` (``"chw"``) -> RGB.

    ``p = round(255*(n+1)/2)`` per channel, clamped to 0..255 (uint8), or ``(n+1)/2`` in
    [0, 1] for a float dtype; the output keeps the input's shape and layout. Normals are
    encoded as given (not renormalised). NaN raises.
    """
    flip_yz = _check_convention(convention)
    dtype = _rgb_dtype(dtype)
    tensor, numpy_io = _real_tensor(normals, "normals")
    if layout not in ("hwc", "chw"):
        raise ValueError(f"layout must be 'hwc' or 'chw', got {layout!r}")
    channel_dim = -1 if layout == "hwc" else -3
    if tensor.ndim < -channel_dim or tensor.shape[channel_dim] != 3:
        raise ValueError(
            f"normals with layout={layout!r} need 3 components at dim {channel_dim}, "
            f"got shape {tuple(tensor.shape)}"
        )
    if torch.isnan(tensor).any():
        raise ValueError("normals contain NaN, which has no colour")
    vectors = tensor if layout == "hwc" else tensor.movedim(-3, -1)
    grid = _flat_grid(tuple(vectors.shape[:-1]))
    _, op = _select("encode_normals", backend, tensor)
    rgb = _output(None, tuple(tensor.shape), dtype, tensor.device, numpy_io, grid + (3,),
                  channels_first=layout == "chw")
    if tensor.numel():
        op(vectors.reshape(grid + (3,)), rgb.kernel, flip_yz)
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


def _check_ignore_index(ignore_index: Any, k: int) -> int:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    ignore_index = int(ignore_index)
    if 0 <= ignore_index < k:
        raise ValueError(
            f"ignore_index={ignore_index} is a valid class index for a palette of K={k} "
            f"colours; pick one outside [0, {k}), e.g. -1"
        )
    return ignore_index


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


def decode_segmentation(rgb, palette, *, max_distance=None, ignore_index=None, layout="auto",
                        out_dtype=None, return_distance=False, backend="auto", out=None,
                        ignore_color=None):
    """Index of the nearest palette colour for every pixel (SPEC §4).

    palette: ``(K, 3)`` in 0..255 units, ``1 <= K <= 65535``, or a
    :class:`vbkernels.palettes.Palette`. Ties go to the lowest index;
    exact for uint8 images with integer palettes. With ``max_distance=r`` a pixel whose
    nearest colour is farther than ``r`` (0..255 units) gets ``ignore_index``, as does a
    NaN pixel. Returns labels ``(..., H, W)``, int64 unless ``out_dtype`` asks for uint8,
    int16 or int32 (``ValueError`` if the labels cannot fit), and with
    ``return_distance=True`` the Euclidean distance to the chosen colour (float32).

    ``ignore_index=None`` means the Palette's, else 255. ``ignore_color=None`` means the
    Palette's, else none. With an ignore colour, pixels nearest to it get ``ignore_index``:
    it is matched as palette entry K, after every class, so a tie with a class colour goes
    to the class.
    """
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
    _, op = _select("decode_segmentation", backend, img.tensor)
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
        op(img.view, palette_w, target, distance.kernel if distance else None,
           max_dist2, ignore_index)
        if wide:
            labels.kernel.copy_(target.masked_fill(target == k, ignore_index))
        elif ignore_color is not None and ignore_index != k:
            labels.kernel.masked_fill_(labels.kernel == k, ignore_index)
    result = labels.finish(img.numpy_io, out)
    if distance is None:
        return result
    return result, distance.finish(img.numpy_io)


def encode_segmentation(labels, palette, *, ignore_color=None, layout="hwc",
                        backend="auto"):
    """Labels ``(..., H, W)`` -> uint8 palette colours ``(..., H, W, 3)`` or ``(..., 3, H, W)``.

    ``palette`` is ``(K, 3)`` or a :class:`vbkernels.palettes.Palette`. Labels outside
    ``[0, K)`` (e.g. an ignore index) are painted ``ignore_color``: ``None`` means the
    Palette's, else black. A palette with fractional values is rounded to the nearest uint8
    colour.
    """
    palette, _, ignore_color = palette_arguments(palette, None, ignore_color,
                                                 default_color=(0, 0, 0))
    tensor, numpy_io = chk.as_tensor(labels, "labels")
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got {tensor.dtype}")
    colours = chk.check_palette(palette, tensor.device)
    colours = colours.to(torch.float64).round().to(torch.uint8).contiguous()
    ignore = torch.as_tensor(ignore_color, dtype=torch.float64).reshape(-1)
    if ignore.numel() != 3 or not torch.isfinite(ignore).all() or ignore.min() < 0 or ignore.max() > 255:
        raise ValueError(f"ignore_color must be 3 values in 0..255, got {ignore_color!r}")
    ignore = ignore.round().to(torch.uint8).to(tensor.device)
    _, op = _select("encode_segmentation", backend, tensor)
    rgb = _encoded_output(tensor, torch.uint8, layout, numpy_io)
    if tensor.numel():
        op(tensor.reshape(_flat_grid(tuple(tensor.shape))), colours, rgb.kernel, ignore)
    return rgb.finish(numpy_io)
