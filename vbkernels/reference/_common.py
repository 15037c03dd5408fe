"""Helpers shared by the torch reference ops: 0..255 units and NaN pixels."""

from __future__ import annotations

import torch

from .._chunks import chunk_pixels, iter_chunks  # noqa: F401  (re-exported for the ops)

def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """SPEC §2: float64 input is computed in float64, everything else in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def to_units(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3) image values as 0..255 units in the working dtype; NaN stays NaN.

    uint8 values become exact float integers, so squared distances of them (< 2^24) are
    exact in float32 and every backend breaks ties identically.
    """
    wdt = work_dtype(rgb.dtype)
    if rgb.dtype == torch.uint8:
        return rgb.to(wdt)
    return rgb.to(wdt).clamp(0.0, 1.0) * 255.0


def nan_pixels(units: torch.Tensor) -> torch.Tensor:
    return torch.isnan(units).any(dim=-1)
