"""0..255 units and NaN pixels for the NumPy baseline (the twin of reference/_common.py)."""

from __future__ import annotations

import numpy as np

from .._chunks import iter_chunks  # noqa: F401  (re-exported for the ops)

# The baseline is CPU-only; its chunk matches the torch reference's CPU chunk.
CHUNK = 1 << 18


def work_dtype(dtype: np.dtype) -> type:
    return np.float64 if dtype == np.float64 else np.float32


def to_units(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) values as 0..255 units in the working dtype; uint8 stays exact integers."""
    wdt = work_dtype(rgb.dtype)
    if rgb.dtype == np.uint8:
        return rgb.astype(wdt)
    # np.clip keeps NaN, like torch.clamp.
    return np.clip(rgb.astype(wdt), 0.0, 1.0) * wdt(255.0)


def fractions(rgb: np.ndarray, units: np.ndarray):
    """Per-channel edge fractions ``up`` and ``down = 1 - up``, each computed directly
    (see vbkernels/reference/_common.py for why)."""
    dt = units.dtype.type
    if rgb.dtype == np.uint8:
        return units / dt(255.0), (dt(255.0) - units) / dt(255.0)
    x = np.clip(rgb.astype(units.dtype), 0.0, 1.0)
    return x, dt(1.0) - x


def nan_pixels(units: np.ndarray) -> np.ndarray:
    return np.isnan(units).any(axis=-1)
