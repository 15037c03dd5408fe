"""Argument checks and small helpers shared by the metric families.

Everything here looks only at shapes, dtypes and devices (Python-side facts), never at
tensor values, so calling it inside ``update`` never synchronises with the device.
"""

from __future__ import annotations

import numpy as np
import torch

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def as_tensor(x, name: str) -> torch.Tensor:
    """``x`` as a torch tensor (NumPy arrays are wrapped without a copy)."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def check_float(x: torch.Tensor, name: str) -> None:
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be a floating-point tensor (float16/bfloat16/float32/float64), "
            f"got {x.dtype}"
        )


def check_integer(x: torch.Tensor, name: str) -> None:
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of class indices, got {x.dtype}")


def check_same_device(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.device != b.device:
        raise RuntimeError(
            f"{name_a} is on {a.device} but {name_b} is on {b.device}; put them on one device"
        )


def check_pair(pred, target, check_dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``pred`` and ``target`` as tensors of one device and one shape, each passing
    ``check_dtype`` (``check_float`` or ``check_integer``)."""
    pred = as_tensor(pred, "pred")
    target = as_tensor(target, "target")
    check_dtype(pred, "pred")
    check_dtype(target, "target")
    check_same_device("pred", pred, "target", target)
    if pred.shape != target.shape:
        raise ValueError(
            f"pred shape {tuple(pred.shape)} must equal target shape {tuple(target.shape)}"
        )
    return pred, target


def check_mask(mask, like: torch.Tensor, shape: tuple, name: str = "mask") -> torch.Tensor | None:
    """``mask`` as a bool tensor broadcast to ``shape``, or None when no mask was given."""
    if mask is None:
        return None
    mask = as_tensor(mask, name)
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor, got {mask.dtype}")
    check_same_device(name, mask, "target", like)
    try:
        return mask.broadcast_to(shape)
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(mask.shape)} does not broadcast to the target shape {shape}"
        ) from None


def check_nonnegative_number(value, name: str, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not np.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"{name} must be a finite number >= 0{' or None' if allow_none else ''}, got {value!r}"
        )
    return float(value)


def to_python(value: torch.Tensor) -> float:
    """One scalar tensor to a Python float: the only place the metrics read back from the device."""
    return float(value.item())
