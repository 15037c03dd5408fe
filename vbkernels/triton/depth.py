"""Cube-walk projection fused with the inverse power transform, and the walk encoders.

``decode_depth`` reads each pixel's three channels once and writes its depth (and, on
request, its distance to the walk) once; nothing is materialised in between. Segment
choice mirrors ``vbkernels.reference.depth.project_units``: integer squared distances for
uint8 (exact ties), segments scanned in ascending order with a strict ``<``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _common as cm


@triton.jit
def _select(better, d, best, k, new_k, s, new_s, c, new_c):
    return (tl.where(better, d, best), tl.where(better, new_k, k),
            tl.where(better, new_s, s), tl.where(better, new_c, c))


@triton.jit
def _nearest_segment(r, g, b, up_r, dn_r, up_g, dn_g, up_b, dn_b):
    """Segment k, local position s, its complement c = 1 - s, and dist2 (docs/format.md, Depth,
    the walk).

    ``r, g, b`` are 0..255 units (int32 for uint8 input: exact); ``up_*``/``dn_*`` each
    channel's edge fractions v/255 and 1 - v/255, both computed directly as the reference
    does, so s and c keep full precision at either end of a segment.
    """
    rr = 255 - r
    gg = 255 - g
    bb = 255 - b
    best = g * g + b * b  # k=0: R rises, G=B=0
    k = tl.zeros_like(r).to(tl.int32)
    s = up_r
    c = dn_r
    d = rr * rr + b * b  # k=1: G rises, R=255, B=0
    best, k, s, c = _select(d < best, d, best, k, 1, s, up_g, c, dn_g)
    d = gg * gg + b * b  # k=2: R falls, G=255, B=0
    best, k, s, c = _select(d < best, d, best, k, 2, s, dn_r, c, up_r)
    d = r * r + gg * gg  # k=3: B rises, R=0, G=255
    best, k, s, c = _select(d < best, d, best, k, 3, s, up_b, c, dn_b)
    d = r * r + bb * bb  # k=4: G falls, R=0, B=255
    best, k, s, c = _select(d < best, d, best, k, 4, s, dn_g, c, up_g)
    d = g * g + bb * bb  # k=5: R rises, G=0, B=255
    best, k, s, c = _select(d < best, d, best, k, 5, s, up_r, c, dn_r)
    d = rr * rr + bb * bb  # k=6: G rises, R=B=255
    best, k, s, c = _select(d < best, d, best, k, 6, s, up_g, c, dn_g)
    return k, s, c, best


@triton.jit
def _fractions(x, IS_U8: tl.constexpr, IS_F64: tl.constexpr):
    """(v/255, 1 - v/255) of a ``load_channel`` value: for uint8 ``(255 - v)/255``, for
    float ``1 - clamp(x)`` (exact for x >= 0.5), mirroring reference ``fractions``."""
    if IS_U8:
        up = cm.to_float(x, IS_F64) / 255.0
        down = cm.to_float(255 - x, IS_F64) / 255.0
    else:
        up = x
        down = 1.0 - x
    return up, down


@triton.jit
def _inverse_power(t, u, scale, expo):
    """``d = scale * expm1(expo * log(u))`` with ``log(u)`` from log1p(-t) when t < 0.5.

    ``scale = -lam*c > 0`` and ``expo = 1/(lam+1) < 0``; u == 0 (white) gives +inf.
    """
    log_small = cm.log1p_small(-tl.where(t < 0.5, t, 0.0))
    u_pos = u > 0.0
    log_big = tl.where(u_pos, tl.log(tl.where(u_pos, u, 1.0)), -float("inf"))
    log_u = tl.where(t < 0.5, log_small, log_big)
    return scale * cm.expm1(log_u * expo)


@triton.autotune(
    configs=cm.row_configs(),
    key=cm.TUNE_KEY,
    prune_configs_by={"early_config_prune": cm.prune_wide_blocks},
)
@triton.jit
def _decode_depth_kernel(
    p_rgb, p_out, p_dist, H, W,
    sr_n, sr_h, sr_w, sr_c,
    so_n, so_h, so_w,
    sd_n, sd_h, sd_w,
    scale, expo, max_depth,
    W_BUCKET, CH_CONTIG,
    IS_U8: tl.constexpr, IS_F64: tl.constexpr, WRITE_DEPTH: tl.constexpr,
    HAS_DIST: tl.constexpr, HAS_MAX: tl.constexpr, BLOCK_W: tl.constexpr,
):
    o_rgb, m_pix = cm.pixel_offsets(H, W, sr_n, sr_h, sr_w, BLOCK_W)
    x_r, nan_r = cm.load_channel(p_rgb, o_rgb, m_pix, IS_U8, IS_F64)
    x_g, nan_g = cm.load_channel(p_rgb, o_rgb + sr_c, m_pix, IS_U8, IS_F64)
    x_b, nan_b = cm.load_channel(p_rgb, o_rgb + 2 * sr_c, m_pix, IS_U8, IS_F64)
    m_nan = nan_r | nan_g | nan_b
    up_r, dn_r = _fractions(x_r, IS_U8, IS_F64)
    up_g, dn_g = _fractions(x_g, IS_U8, IS_F64)
    up_b, dn_b = _fractions(x_b, IS_U8, IS_F64)
    k, s, c, dist2 = _nearest_segment(
        cm.to_units(x_r, IS_U8), cm.to_units(x_g, IS_U8), cm.to_units(x_b, IS_U8),
        up_r, dn_r, up_g, dn_g, up_b, dn_b,
    )
    kf = cm.to_float(k, IS_F64)
    t = (kf + s) / 7.0
    nan_value = float("nan")
    if WRITE_DEPTH:
        u = ((6.0 - kf) + c) / 7.0
        out = _inverse_power(t, u, scale, expo)
        if HAS_MAX:
            out = tl.where(out > max_depth, max_depth, out)
    else:
        out = t
    out = tl.where(m_nan, nan_value, out)
    o_out, _ = cm.pixel_offsets(H, W, so_n, so_h, so_w, BLOCK_W)
    tl.store(p_out + o_out, out.to(p_out.dtype.element_ty), mask=m_pix)
    if HAS_DIST:
        dist = tl.sqrt(dist2.to(tl.float32))
        dist = tl.where(m_nan, nan_value, dist)
        o_dist, _ = cm.pixel_offsets(H, W, sd_n, sd_h, sd_w, BLOCK_W)
        tl.store(p_dist + o_dist, dist.to(p_dist.dtype.element_ty), mask=m_pix)


def _launch_decode(rgb, out, distance, write_depth, lam, c, max_depth):
    if cm.empty(rgb):
        return
    n, h, w, _ = rgb.shape
    dist = out if distance is None else distance  # a valid pointer; never written if unused
    _decode_depth_kernel[cm.row_grid(n, h, w)](
        rgb, out, dist, h, w,
        *rgb.stride(),
        *cm.strides3(out),
        *cm.strides3(dist),
        -lam * c, 1.0 / (lam + 1.0), 0.0 if max_depth is None else float(max_depth),
        cm.width_bucket(w), cm.channel_contiguous(rgb),
        IS_U8=rgb.dtype == torch.uint8, IS_F64=rgb.dtype == torch.float64,
        WRITE_DEPTH=write_depth, HAS_DIST=distance is not None, HAS_MAX=max_depth is not None,
    )


def hilbert_project(rgb: torch.Tensor, t: torch.Tensor) -> None:
    _launch_decode(rgb, t, None, False, -3.0, 10.0 / 3.0, None)


def decode_depth(rgb, depth, distance, lam, c, max_depth) -> None:
    _launch_decode(rgb, depth, distance, True, lam, c, max_depth)


# Vertex bits of the walk, one byte per channel: bit k is that channel of vertex k
# (vbkernels._walk.VERTICES: R is 1 at k = 1, 2, 6, 7; G at 2, 3, 4, 7; B at 4, 5, 6, 7).
_R_BITS = tl.constexpr(0b11000110)
_G_BITS = tl.constexpr(0b10011100)
_B_BITS = tl.constexpr(0b11110000)


@triton.jit
def _walk_channel(k, s, BITS: tl.constexpr):
    bits = tl.zeros_like(k) + BITS  # a tensor: the interpreter cannot shift a constexpr
    start = ((bits >> k) & 1).to(tl.float64)
    end = ((bits >> (k + 1)) & 1).to(tl.float64)
    return start + s * (end - start)


@triton.jit
def _store_walk_channel(p_rgb, offsets, value, nan, mask, OUT_U8: tl.constexpr):
    if OUT_U8:
        units = cm.round_half_even_f64(value * 255.0)
        units = tl.minimum(tl.maximum(units, 0.0), 255.0)
        units = tl.where(nan, 0.0, units)  # NaN has no uint8 value; black, never garbage
        tl.store(p_rgb + offsets, units.to(tl.uint8), mask=mask)
    else:
        tl.store(p_rgb + offsets, cm.cast_for(value, p_rgb), mask=mask)


@triton.autotune(
    configs=cm.row_configs(),
    key=cm.TUNE_KEY,
    prune_configs_by={"early_config_prune": cm.prune_wide_blocks},
)
@triton.jit
def _walk_kernel(
    p_in, p_rgb, H, W,
    si_n, si_h, si_w,
    so_n, so_h, so_w, so_c,
    scale_hi, scale_lo, lam1_hi, lam1_lo,
    W_BUCKET, CH_CONTIG,
    FROM_DEPTH: tl.constexpr, OUT_U8: tl.constexpr, BLOCK_W: tl.constexpr,
):
    """RGB of the walk at t (or at power_transform(depth)); float64 like the reference."""
    o_in, m_pix = cm.pixel_offsets(H, W, si_n, si_h, si_w, BLOCK_W)
    x = tl.load(p_in + o_in, mask=m_pix, other=0).to(tl.float64)
    if FROM_DEPTH:
        # t = -expm1((lam+1) * log1p(d / (-lam*c))); d = +inf gives t = 1 (white).
        zero = tl.zeros_like(x)  # float64: the scalars join it exactly, then add
        scale = (zero + scale_hi) + scale_lo
        lam_plus_1 = (zero + lam1_hi) + lam1_lo
        x = -cm.expm1(lam_plus_1 * cm.log1p(x / scale))
    nan = x != x
    pos = tl.minimum(tl.maximum(x, 0.0), 1.0) * 7.0
    pos = tl.where(nan, 0.0, pos)
    kf = tl.minimum(tl.floor(pos), 6.0)
    s = pos - kf
    k = kf.to(tl.int32)
    o_rgb, _ = cm.pixel_offsets(H, W, so_n, so_h, so_w, BLOCK_W)
    nan_value = float("nan")
    r = tl.where(nan, nan_value, _walk_channel(k, s, _R_BITS))
    g = tl.where(nan, nan_value, _walk_channel(k, s, _G_BITS))
    b = tl.where(nan, nan_value, _walk_channel(k, s, _B_BITS))
    _store_walk_channel(p_rgb, o_rgb, r, nan, m_pix, OUT_U8)
    _store_walk_channel(p_rgb, o_rgb + so_c, g, nan, m_pix, OUT_U8)
    _store_walk_channel(p_rgb, o_rgb + 2 * so_c, b, nan, m_pix, OUT_U8)


def _launch_walk(src, rgb, from_depth, lam, c):
    if cm.empty(src):
        return
    n, h, w = src.shape
    _walk_kernel[cm.row_grid(n, h, w)](
        src, rgb, h, w,
        *cm.strides3(src),
        *rgb.stride(),
        *cm.split_f64(-lam * c), *cm.split_f64(lam + 1.0),
        cm.width_bucket(w), cm.channel_contiguous(rgb),
        FROM_DEPTH=from_depth, OUT_U8=rgb.dtype == torch.uint8,
    )


def hilbert_walk(t: torch.Tensor, rgb: torch.Tensor) -> None:
    _launch_walk(t, rgb, False, -3.0, 10.0 / 3.0)


def encode_depth(depth: torch.Tensor, rgb: torch.Tensor, lam: float, c: float) -> None:
    _launch_walk(depth, rgb, True, lam, c)
