"""Cube-walk projection, inverse power transform and their encoders in plain torch.

This is the reference every fast backend is tested against (docs/format.md, Depth). Kernel ops
follow the destination-passing signatures documented in ``vbkernels._dispatch``.
"""

from __future__ import annotations

import torch

from .._walk import SEGMENTS, VERTICES
from ._common import chunk_pixels, fractions, iter_chunks, nan_pixels, to_units


def project_units(p: torch.Tensor, up: torch.Tensor, down: torch.Tensor):
    """Nearest walk segment for (M, 3) pixels ``p`` in 0..255 units.

    ``up``/``down`` are the per-channel edge fractions from ``_common.fractions``.
    Returns ``(k, s, r, dist2)``: segment index (int64), local position ``s`` in [0, 1],
    its complement ``r = 1 - s`` computed directly (not as ``1 - s``, which cancels near
    the segment end and costs depth precision near white), and the squared distance.
    Segments are scanned in ascending order with a strict ``<``, so ties go to the lowest k.
    """
    best_d2 = torch.full(p.shape[:-1], float("inf"), dtype=p.dtype, device=p.device)
    best_k = torch.zeros(p.shape[:-1], dtype=torch.int64, device=p.device)
    best_s = torch.zeros_like(best_d2)
    best_r = torch.ones_like(best_d2)
    for k, seg in enumerate(SEGMENTS):
        d2 = (p[..., seg.fixed_a] - seg.value_a) ** 2 + (p[..., seg.fixed_b] - seg.value_b) ** 2
        a_up, a_down = up[..., seg.varying], down[..., seg.varying]
        s, r = (a_up, a_down) if seg.rising else (a_down, a_up)
        better = d2 < best_d2
        best_d2 = torch.where(better, d2, best_d2)
        best_k = torch.where(better, k, best_k)
        best_s = torch.where(better, s, best_s)
        best_r = torch.where(better, r, best_r)
    return best_k, best_s, best_r, best_d2


def walk_position(k: torch.Tensor, s: torch.Tensor, r: torch.Tensor):
    """``t = (k + s) / 7`` and ``u = 1 - t = (6 - k + r) / 7`` without cancellation."""
    t = (k + s) / 7.0
    u = ((6 - k) + r) / 7.0
    return t, u


def inverse_power_tu(t: torch.Tensor, u: torch.Tensor, lam: float, c: float) -> torch.Tensor:
    """``d = lam*c*(1 - u^(1/(lam+1)))`` evaluated as ``-lam*c*expm1(log(u)/(lam+1))``.

    ``log(u)`` comes from ``log1p(-t)`` for small t (where u = 1 - t would round) and from
    ``log(u)`` otherwise, so depth keeps ~1e-7 relative precision over the whole walk.
    ``u == 0`` (white) gives +inf.
    """
    log_u = torch.where(t < 0.5, torch.log1p(-t), torch.log(u))
    return (-lam * c) * torch.expm1(log_u / (lam + 1.0))


def _project_chunk(rgb: torch.Tensor):
    p = to_units(rgb)
    k, s, r, d2 = project_units(p, *fractions(rgb, p))
    t, u = walk_position(k, s, r)
    nan = nan_pixels(p)
    return t, u, d2, nan


def hilbert_project(rgb: torch.Tensor, t_out: torch.Tensor) -> None:
    for imgs, rows in iter_chunks(rgb.shape, chunk_pixels(rgb.device)):
        t, _, _, nan = _project_chunk(rgb[imgs, rows])
        t_out[imgs, rows] = t.masked_fill(nan, float("nan"))


def decode_depth(rgb, depth_out, distance_out, lam, c, max_depth) -> None:
    for imgs, rows in iter_chunks(rgb.shape, chunk_pixels(rgb.device)):
        t, u, d2, nan = _project_chunk(rgb[imgs, rows])
        depth = inverse_power_tu(t, u, lam, c)
        if max_depth is not None:
            depth = depth.clamp_max(max_depth)
        depth_out[imgs, rows] = depth.masked_fill(nan, float("nan"))
        if distance_out is not None:
            dist = torch.sqrt(d2).masked_fill(nan, float("nan"))
            distance_out[imgs, rows] = dist


# ``log(1 - t)`` below which ``t > 1/2``: from there on ``1 - exp`` is the precise form.
_LOG_HALF = -0.6931471805599453


def power_transform(depth: torch.Tensor, lam: float, c: float) -> torch.Tensor:
    """``t = 1 - (1 - d/(lam*c))^(lam+1)``, precise at both ends of [0, inf).

    With ``log_u = (lam+1)*log1p(d/(-lam*c))`` (the log of ``1 - t``): small depths take
    ``-expm1(log_u)``, which keeps the relative precision of tiny ``t``; once ``t > 1/2``
    ``1 - exp(log_u)`` has no cancellation and stays below 1 as long as the floating type
    can tell ``t`` from 1 (``torch.expm1`` already returns -1 there: float64 depth 1e9 m,
    t = 1 - 1e-16, would otherwise encode as white, i.e. infinite).
    """
    log_u = (lam + 1.0) * torch.log1p(depth / (-lam * c))
    return torch.where(log_u > _LOG_HALF, -torch.expm1(log_u), 1.0 - torch.exp(log_u))


def inverse_power_transform(t: torch.Tensor, lam: float, c: float) -> torch.Tensor:
    return inverse_power_tu(t, 1.0 - t, lam, c)


def walk_points(t: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] of the walk at ``t`` (clamped to [0, 1]; NaN gives NaN), shape (..., 3)."""
    vertices = torch.tensor(VERTICES, dtype=torch.float64, device=t.device)
    x = t.to(torch.float64).clamp(0.0, 1.0) * 7.0
    nan = torch.isnan(x)
    k = torch.nan_to_num(x).floor().clamp_max(6).to(torch.int64)
    s = (x - k).unsqueeze(-1)
    start, end = vertices[k], vertices[k + 1]
    points = start + s * (end - start)
    return points.masked_fill(nan.unsqueeze(-1), float("nan"))


def write_rgb(points: torch.Tensor, rgb_out: torch.Tensor) -> None:
    """Store [0, 1] points as uint8 (round half to even) or as floats in [0, 1]."""
    if rgb_out.dtype == torch.uint8:
        rgb_out.copy_(torch.round(points * 255.0).clamp(0, 255).to(torch.uint8))
    else:
        rgb_out.copy_(points)


def hilbert_walk(t: torch.Tensor, rgb_out: torch.Tensor) -> None:
    for imgs, rows in iter_chunks(t.shape + (1,), chunk_pixels(t.device)):
        write_rgb(walk_points(t[imgs, rows]), rgb_out[imgs, rows])


def encode_depth(depth: torch.Tensor, rgb_out: torch.Tensor, lam: float, c: float) -> None:
    for imgs, rows in iter_chunks(depth.shape + (1,), chunk_pixels(depth.device)):
        t = power_transform(depth[imgs, rows].to(torch.float64), lam, c)
        write_rgb(walk_points(t), rgb_out[imgs, rows])
