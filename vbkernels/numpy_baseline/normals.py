"""Normals from linearly mapped RGB, and back, in vectorised NumPy (the baseline)."""

from __future__ import annotations

import numpy as np

from ._common import CHUNK, iter_chunks, to_units

_OPENCV_SIGN = np.array([1.0, -1.0, -1.0])


def scaled_vectors(rgb: np.ndarray):
    """``(m, scale)`` with ``n = m / scale``: uint8 gives the exact integer ``2p - 255`` and
    255 (see vbkernels/reference/normals.py for why), floats ``2p/255 - 1`` and 1."""
    units = to_units(rgb)
    dt = units.dtype.type
    if rgb.dtype == np.uint8:
        return units * dt(2.0) - dt(255.0), 255.0
    return units * dt(2.0 / 255.0) - dt(1.0), 1.0


def decode_normals(rgb, normals_out, norm_out, flip_yz, eps):
    for imgs, rows in iter_chunks(rgb.shape, CHUNK):
        m, scale = scaled_vectors(rgb[imgs, rows])
        dt = m.dtype.type
        length = np.sqrt((m[..., 0] * m[..., 0] + m[..., 1] * m[..., 1]) + m[..., 2] * m[..., 2])
        norm = length / dt(scale) if scale != 1.0 else length
        with np.errstate(divide="ignore", invalid="ignore"):
            unit = np.where((norm < eps)[..., None], dt(0.0), m / length[..., None])
        if flip_yz:
            unit = unit * _OPENCV_SIGN.astype(m.dtype)
        normals_out[imgs, rows] = unit
        if norm_out is not None:
            norm_out[imgs, rows] = norm


def encode_normals(normals, rgb_out, flip_yz):
    for imgs, rows in iter_chunks(normals.shape, CHUNK):
        n = normals[imgs, rows].astype(np.float64)
        if flip_yz:
            n = n * _OPENCV_SIGN
        units = np.clip(255.0 * (n + 1.0) / 2.0, 0.0, 255.0)
        if rgb_out.dtype == np.uint8:
            rgb_out[imgs, rows] = np.round(units).astype(np.uint8)
        else:
            rgb_out[imgs, rows] = units / 255.0
