"""Cube-walk projection and inverse power transform in vectorised NumPy: the baseline.

Same algorithm, order of operations and tie rule as ``vbkernels.reference.depth``, so uint8
segment choices match it exactly; the loop runs over the 7 segments, never over pixels.
"""

from __future__ import annotations

import numpy as np

from .._walk import SEGMENTS, VERTICES
from ._common import CHUNK, fractions, iter_chunks, nan_pixels, to_units


def project_units(p: np.ndarray, up: np.ndarray, down: np.ndarray):
    """Segment ``k``, position ``s``, complement ``r = 1 - s`` and dist2; ties to lowest k."""
    dt = p.dtype.type
    shape = p.shape[:-1]
    best_d2 = np.full(shape, np.inf, dtype=p.dtype)
    best_k = np.zeros(shape, dtype=np.int64)
    best_s = np.zeros(shape, dtype=p.dtype)
    best_r = np.ones(shape, dtype=p.dtype)
    for k, seg in enumerate(SEGMENTS):
        da = p[..., seg.fixed_a] - dt(seg.value_a)
        db = p[..., seg.fixed_b] - dt(seg.value_b)
        d2 = da * da + db * db
        a_up, a_down = up[..., seg.varying], down[..., seg.varying]
        s, r = (a_up, a_down) if seg.rising else (a_down, a_up)
        better = d2 < best_d2
        best_d2 = np.where(better, d2, best_d2)
        best_k = np.where(better, k, best_k)
        best_s = np.where(better, s, best_s)
        best_r = np.where(better, r, best_r)
    return best_k, best_s, best_r, best_d2


def walk_position(k, s, r):
    dt = s.dtype.type
    t = (k.astype(s.dtype) + s) / dt(7.0)
    u = ((6 - k).astype(s.dtype) + r) / dt(7.0)
    return t, u


def inverse_power_tu(t, u, lam, c):
    """``-lam*c*expm1(log(u)/(lam+1))`` with ``log(u)`` from log1p(-t) for small t."""
    dt = t.dtype.type
    with np.errstate(divide="ignore", invalid="ignore"):
        log_u = np.where(t < 0.5, np.log1p(-t), np.log(u))
        return dt(-lam * c) * np.expm1(log_u / dt(lam + 1.0))


def _project_chunk(rgb):
    p = to_units(rgb)
    k, s, r, d2 = project_units(p, *fractions(rgb, p))
    t, u = walk_position(k, s, r)
    return t, u, d2, nan_pixels(p)


def hilbert_project(rgb, t_out):
    for imgs, rows in iter_chunks(rgb.shape, CHUNK):
        t, _, _, nan = _project_chunk(rgb[imgs, rows])
        t[nan] = np.nan
        t_out[imgs, rows] = t


def decode_depth(rgb, depth_out, distance_out, lam, c, max_depth):
    for imgs, rows in iter_chunks(rgb.shape, CHUNK):
        t, u, d2, nan = _project_chunk(rgb[imgs, rows])
        depth = inverse_power_tu(t, u, lam, c)
        if max_depth is not None:
            depth = np.minimum(depth, depth.dtype.type(max_depth))
        depth[nan] = np.nan
        depth_out[imgs, rows] = depth
        if distance_out is not None:
            dist = np.sqrt(d2).astype(np.float32)
            dist[nan] = np.nan
            distance_out[imgs, rows] = dist


# ``log(1 - t)`` below which ``t > 1/2`` (see vbkernels/reference/depth.py).
_LOG_HALF = -0.6931471805599453


def power_transform(depth, lam, c):
    """``t = 1 - (1 - d/(lam*c))^(lam+1)``: ``-expm1`` for small t, ``1 - exp`` past 1/2."""
    dt = depth.dtype.type
    log_u = dt(lam + 1.0) * np.log1p(depth / dt(-lam * c))
    return np.where(log_u > dt(_LOG_HALF), -np.expm1(log_u), dt(1.0) - np.exp(log_u))


def walk_points(t):
    """RGB in [0, 1] of the walk at t (clamped; NaN gives NaN), float64, shape (..., 3)."""
    vertices = np.asarray(VERTICES, dtype=np.float64)
    x = np.clip(t.astype(np.float64), 0.0, 1.0) * 7.0
    nan = np.isnan(x)
    k = np.minimum(np.floor(np.nan_to_num(x)), 6).astype(np.int64)
    s = (x - k)[..., None]
    points = vertices[k] + s * (vertices[k + 1] - vertices[k])
    points[nan] = np.nan
    return points


def write_rgb(points, rgb_out):
    if rgb_out.dtype == np.uint8:
        rgb_out[...] = np.clip(np.round(points * 255.0), 0, 255).astype(np.uint8)
    else:
        rgb_out[...] = points


def hilbert_walk(t, rgb_out):
    for imgs, rows in iter_chunks(t.shape + (1,), CHUNK):
        write_rgb(walk_points(t[imgs, rows]), rgb_out[imgs, rows])


def encode_depth(depth, rgb_out, lam, c):
    for imgs, rows in iter_chunks(depth.shape + (1,), CHUNK):
        with np.errstate(over="ignore"):
            t = power_transform(depth[imgs, rows].astype(np.float64), lam, c)
        write_rgb(walk_points(t), rgb_out[imgs, rows])
