"""Helpers shared by the torch reference ops: 0..255 units and NaN pixels."""

from __future__ import annotations

import torch

from .._chunks import chunk_pixels, iter_chunks  # noqa: F401  (re-exported for the ops)

def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """docs/format.md, Depth: float64 input is computed in float64, everything else in float32."""
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


def fractions(rgb: torch.Tensor, units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each channel's position along a walk edge, ``up = v/255``, and ``down = 1 - up``.

    Both are computed directly from the input rather than one from the other: for uint8
    ``(255 - p)/255``, for floats ``1 - clamp(x)`` (exact for x >= 0.5). That keeps the
    distance to the end of a segment, and with it depth near white, at full precision.
    """
    if rgb.dtype == torch.uint8:
        return units / 255.0, (255.0 - units) / 255.0
    x = rgb.to(units.dtype).clamp(0.0, 1.0)
    return x, 1.0 - x


def nan_pixels(units: torch.Tensor) -> torch.Tensor:
    return torch.isnan(units).any(dim=-1)
