"""Argument validation, layout detection and the canonical (N, H, W, 3) view: one place.

Every public function funnels its inputs through here before any backend runs, so the
error messages are the same whichever backend the user picks (SPEC §6).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

IMAGE_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64)
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
LABEL_DTYPES = (torch.uint8, torch.int16, torch.int32, torch.int64)
LAYOUTS = ("auto", "hwc", "chw")


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
    """SPEC §1: "auto" means last dim 3 -> hwc, else dim -3 is 3 -> chw."""
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


def finite_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def power_params(lam: Any, c: Any) -> tuple[float, float]:
    """SPEC §2: the transform is valid for finite lam < -1 and c > 0."""
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
    return tensor


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
