"""Argument validation, layout detection and the canonical (N, H, W, 3) view: one place.

Every public function funnels its inputs through here before any backend runs, so the
error messages are the same whichever backend the user picks (docs/format.md, Errors).
Other parts of the package (the CLI) use these too, e.g. ``power_params`` to check the
transform parameters before any work.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

IMAGE_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64)
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
LABEL_DTYPES = (torch.uint8, torch.int16, torch.int32, torch.int64)
LAYOUTS = ("auto", "hwc", "chw")
CONVENTIONS = ("opengl", "opencv")


def as_tensor(x: Any, name: str) -> tuple[torch.Tensor, bool]:
    """Return ``(tensor, came_from_numpy)``; NumPy arrays are wrapped without a copy."""
    if isinstance(x, torch.Tensor):
        return x, False
    if isinstance(x, np.ndarray):
        if x.dtype == object or x.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be a uint8 or floating array, got dtype {x.dtype}")
        if any(s < 0 for s in x.strides):
            # torch.from_numpy cannot view negative strides; one copy keeps the values.
            x = np.ascontiguousarray(x)
        with warnings.catch_warnings():
            # Read-only arrays (np.asarray of a PIL image) are fine: inputs are only read,
            # and outputs are checked for writeability separately in check_out.
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(x), True
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def check_image_dtype(rgb: torch.Tensor, name: str = "rgb") -> None:
    if rgb.dtype not in IMAGE_DTYPES:
        raise TypeError(
            f"{name} must be uint8 (0..255) or float16/bfloat16/float32/float64 (0..1), "
            f"got {rgb.dtype}"
        )


def resolve_layout(shape: tuple[int, ...], layout: str, name: str = "rgb") -> str:
    """docs/format.md, Images: "auto" means last dim 3 -> hwc, else dim -3 is 3 -> chw."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if len(shape) < 3:
        raise ValueError(
            f"{name} must have shape (..., H, W, 3) or (..., 3, H, W), got {tuple(shape)}"
        )
    if layout == "auto":
        if shape[-1] == 3:
            return "hwc"
        if shape[-3] == 3:
            return "chw"
        raise ValueError(
            f"{name} has no channel dim of size 3 at -1 (hwc) or -3 (chw): shape {tuple(shape)}"
        )
    channel_dim = -1 if layout == "hwc" else -3
    if shape[channel_dim] != 3:
        raise ValueError(
            f"{name} with layout={layout!r} needs 3 channels at dim {channel_dim}, "
            f"got shape {tuple(shape)}"
        )
    return layout


def image_view(rgb: torch.Tensor, layout: str) -> tuple[torch.Tensor, tuple[int, ...]]:
    """The (N, H, W, 3) view kernels read, and the leading batch shape.

    Channels-first input is moved with ``movedim`` (a view, no copy). The leading dims are
    merged with ``reshape``, which is a view whenever they are mergeable; only a permuted
    batch dimension costs a copy here.
    """
    hwc = rgb if layout == "hwc" else rgb.movedim(-3, -1)
    batch = tuple(hwc.shape[:-3])
    height, width = hwc.shape[-3], hwc.shape[-2]
    return hwc.reshape(math.prod(batch), height, width, 3), batch


@dataclass
class Image:
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


def image(rgb: Any, layout: str) -> Image:
    """Validate an input image (type, dtype, layout) and build its (N, H, W, 3) view."""
    tensor, numpy_io = as_tensor(rgb, "rgb")
    check_image_dtype(tensor)
    layout = resolve_layout(tuple(tensor.shape), layout)
    view, batch = image_view(tensor, layout)
    warn_float_range(view)
    return Image(tensor, view, batch, layout, numpy_io)


# docs/format.md, Images: a float image is read in [0, 1], and values a little outside are
# clamped on purpose; only data that looks like another range is flagged.
_SAMPLED_PIXELS = 4096  # at most this many pixels are looked at, spread over the batch
_TOO_HIGH = 1.5  # above: 0..255 data passed as float (a wrong range, not a rounding excess)
_TOO_LOW = -0.5  # below: a generator's [-1, 1] output passed without (x + 1) / 2


def warn_float_range(view: torch.Tensor) -> None:
    """``warnings.warn`` when a float image on the CPU (a tensor or a NumPy array) looks
    like 0..255 or [-1, 1] data rather than [0, 1] (issue: 0..255 floats decode to +inf).

    Looked at: a strided sample of at most ``_SAMPLED_PIXELS`` pixels, so the cost is a
    few microseconds whatever the image size. Not looked at: CUDA (and other device)
    tensors, where reading a value would make the host wait for the device, and tensors
    under ``torch.compile`` or a ``torch.func`` transform, whose values are not concrete.
    The warning names the caller's line and, with Python's default filter, is shown once
    per line.
    """
    if (not view.is_floating_point() or view.device.type != "cpu" or view.numel() == 0
            or torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active()):
        return
    n, height, width = view.shape[:3]
    step = max(1, math.isqrt(n * height * width // _SAMPLED_PIXELS))
    sample = view[:, ::step, ::step].detach()
    low, high = torch.aminmax(sample.nan_to_num(0.5))
    # Fixed texts: Python's filter shows a warning once per line and text.
    if high > _TOO_HIGH:
        message = (f"rgb is a float image with values above {_TOO_HIGH}, like 0..255 data; "
                   "float images are read in [0, 1] (values outside are clamped): pass "
                   "uint8, or divide by 255")
    elif low < _TOO_LOW:
        message = (f"rgb is a float image with values below {_TOO_LOW}, like [-1, 1] data; "
                   "float images are read in [0, 1] (values outside are clamped): pass "
                   "(x + 1) / 2")
    else:
        return
    warnings.warn(message, UserWarning, stacklevel=_caller_stacklevel())


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points ``warnings.warn`` at the first frame outside this
    package (the user's call), however deep inside vbkernels the check runs."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def torch_dtype(dtype: Any, name: str) -> torch.dtype:
    """A torch dtype from a torch or NumPy dtype (or anything ``np.dtype`` accepts)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return getattr(torch, np.dtype(dtype).name)
    except (TypeError, AttributeError):
        raise TypeError(f"{name} must be a torch or numpy dtype, got {dtype!r}") from None


def rgb_dtype(dtype: Any) -> torch.dtype:
    """The dtype of an encoder's RGB output: uint8 (0..255) or a float dtype (0..1)."""
    dtype = torch_dtype(dtype, "dtype")
    if dtype != torch.uint8 and dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be uint8 (0..255) or a float dtype (0..1), got {dtype}")
    return dtype


def normals_dtype(out_dtype: Any) -> torch.dtype:
    """decode_normals' output dtype: float32 by default, or another float dtype."""
    out_dtype = torch.float32 if out_dtype is None else torch_dtype(out_dtype, "out_dtype")
    if out_dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"out_dtype must be float16, bfloat16, float32 or float64, got {out_dtype}")
    return out_dtype


def label_dtype(out_dtype: Any) -> torch.dtype:
    """decode_segmentation's label dtype: int64 by default, or uint8/int16/int32."""
    out_dtype = torch.int64 if out_dtype is None else torch_dtype(out_dtype, "out_dtype")
    if out_dtype not in LABEL_DTYPES:
        raise ValueError(f"out_dtype must be uint8, int16, int32 or int64, got {out_dtype}")
    return out_dtype


def encoded_layout(layout: Any) -> str:
    """An encoder's output layout: "hwc" or "chw" (there is no input to detect it from)."""
    if layout not in ("hwc", "chw"):
        raise ValueError(f"layout must be 'hwc' or 'chw', got {layout!r}")
    return layout


def flip_yz(convention: Any) -> bool:
    """True when y and z must be negated (OpenCV camera axes, docs/format.md, Normals)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    return convention == "opencv"


def real_tensor(x: Any, name: str) -> tuple[torch.Tensor, bool]:
    """A real-valued tensor (integers become float32) and whether it came from NumPy."""
    tensor, numpy_io = as_tensor(x, name)
    if not tensor.is_floating_point():
        if tensor.dtype == torch.bool or tensor.is_complex():
            raise TypeError(f"{name} must be real-valued, got {tensor.dtype}")
        tensor = tensor.to(torch.float32)
    return tensor, numpy_io


def elementwise_input(x: Any, name: str) -> tuple[torch.Tensor, Callable]:
    """Tensor, array or Python number -> (float tensor, how to hand the result back).

    A Python number becomes a float64 scalar and comes back as a ``float``.
    """
    if isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool):
        return torch.tensor(float(x), dtype=torch.float64), float
    tensor, numpy_io = real_tensor(x, name)
    if numpy_io:
        return tensor, lambda t: t.numpy()
    return tensor, lambda t: t


def encodable_depth(depth: torch.Tensor, negative: Any) -> torch.Tensor:
    """Depth an encoder accepts: no NaN, negatives raise or (``negative="clamp"``) become 0."""
    if negative not in ("raise", "clamp"):
        raise ValueError(f"negative must be 'raise' or 'clamp', got {negative!r}")
    # One reduction finds both (min propagates NaN); 25x cheaper than isnan().any() plus
    # (tensor < 0).any() on a 1080p frame, and no clamped copy when nothing is negative.
    low = depth.min() if depth.numel() else torch.zeros(())
    if torch.isnan(low):
        raise ValueError("depth contains NaN, which has no colour on the walk")
    if low < 0:
        if negative != "clamp":
            raise ValueError("depth must be >= 0 (pass negative='clamp' to encode negatives as 0)")
        return depth.clamp_min(0.0)
    return depth


def encodable_normals(normals: torch.Tensor, layout: Any) -> torch.Tensor:
    """(..., 3) vectors of a normal map in ``layout`` ("hwc" or "chw"); NaN raises."""
    layout = encoded_layout(layout)
    channel_dim = -1 if layout == "hwc" else -3
    if normals.ndim < -channel_dim or normals.shape[channel_dim] != 3:
        raise ValueError(
            f"normals with layout={layout!r} need 3 components at dim {channel_dim}, "
            f"got shape {tuple(normals.shape)}"
        )
    if torch.isnan(normals).any():
        raise ValueError("normals contain NaN, which has no colour")
    return normals if layout == "hwc" else normals.movedim(-3, -1)


def ignore_index(value: Any, k: int) -> int:
    """An ``ignore_index`` that is an int outside the palette's class range [0, k)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"ignore_index must be an int, got {type(value).__name__}")
    value = int(value)
    if 0 <= value < k:
        raise ValueError(
            f"ignore_index={value} is a valid class index for a palette of K={k} "
            f"colours; pick one outside [0, {k}), e.g. -1"
        )
    return value


def finite_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def power_params(lam: Any, c: Any) -> tuple[float, float]:
    """``(lam, c)`` as floats, checked: the power transform is valid for finite
    ``lam < -1`` and ``c > 0`` (docs/format.md, Depth); anything else is a ``ValueError``
    (``TypeError`` for a non-number). The CLI calls this to check its options up front."""
    lam = finite_float(lam, "lam")
    c = finite_float(c, "c")
    if not lam < -1.0:
        raise ValueError(f"lam must be < -1 (the default is -3), got {lam}")
    if not c > 0.0:
        raise ValueError(f"c must be > 0 (the default is 10/3), got {c}")
    return lam, c


def optional_positive(value: Any, name: str) -> float | None:
    if value is None:
        return None
    value = finite_float(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def check_out(
    out: Any,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
    numpy_io: bool,
    name: str = "out",
) -> torch.Tensor | None:
    """Validate a caller's preallocated output; return it as a tensor (sharing memory)."""
    if out is None:
        return None
    expected_type = np.ndarray if numpy_io else torch.Tensor
    if not isinstance(out, expected_type):
        raise ValueError(
            f"{name} must be a {expected_type.__module__}.{expected_type.__name__} like the "
            f"input, got {type(out).__name__}"
        )
    tensor, _ = as_tensor(out, name) if numpy_io else (out, False)
    if numpy_io and not out.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    if tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype or tensor.device != device:
        raise ValueError(
            f"{name} must have shape {tuple(shape)}, dtype {dtype} and device {device}; got "
            f"shape {tuple(tensor.shape)}, dtype {tensor.dtype}, device {tensor.device}"
        )
    if has_internal_overlap(tensor):
        # torch's own out= refuses this (an expanded tensor); a backend writing through
        # pointers would store every element to the same few addresses instead.
        raise RuntimeError(
            f"unsupported operation: more than one element of {name} refers to a single "
            "memory location (an expanded or stride-0 tensor); pass a contiguous tensor or "
            "clone() it first")
    return tensor


def has_internal_overlap(tensor: torch.Tensor) -> bool:
    """Whether two elements of ``tensor`` share memory through a stride-0 dimension, the
    case torch's own ``out=`` checks refuse (other overlapping stride patterns are rare
    and torch does not detect them either)."""
    return any(stride == 0 and size > 1 for size, stride in zip(tensor.shape, tensor.stride()))


def check_palette(palette: Any, device: torch.device, name: str = "palette") -> torch.Tensor:
    """A (K, 3) palette in 0..255 units, 1 <= K <= 65535, finite, as a tensor on ``device``."""
    if isinstance(palette, (list, tuple)):
        palette = torch.tensor(palette, dtype=torch.float64)
    tensor, _ = as_tensor(palette, name)
    if tensor.dtype == torch.bool or tensor.is_complex() or tensor.dtype not in (
        torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
        torch.float16, torch.bfloat16, torch.float32, torch.float64,
    ):
        raise TypeError(f"{name} must hold real numbers in 0..255, got dtype {tensor.dtype}")
    if tensor.ndim != 2 or tensor.shape[1] != 3:
        raise ValueError(f"{name} must have shape (K, 3), got {tuple(tensor.shape)}")
    if not 1 <= tensor.shape[0] <= 65535:
        raise ValueError(f"{name} must have 1 <= K <= 65535 colours, got K={tensor.shape[0]}")
    if torch.compiler.is_compiling():
        # Reading values back would break the graph; shapes and dtypes are checked above.
        return tensor.to(device)
    values = tensor.detach().to("cpu", torch.float64)
    if not torch.isfinite(values).all() or values.min() < 0 or values.max() > 255:
        raise ValueError(f"{name} values must be finite and in 0..255 units")
    return tensor.to(device)


def int_fits(value: int, dtype: torch.dtype) -> bool:
    info = torch.iinfo(dtype)
    return info.min <= value <= info.max
