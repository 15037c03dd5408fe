"""Surface normals from linearly mapped RGB and back (docs/format.md, Normals), one pass per
pixel."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _common as cm


@triton.jit
def _unit_u8(r, g, b, eps, FLIP_YZ: tl.constexpr):
    """Unit normal and |n| of uint8 channels (int32): n = (2p - 255)/255 is proportional to
    the exact integer vector 2p - 255 (odd, never zero), so n/|n| is that vector times
    rsqrt of its exact integer squared length: three roundings, within 3e-7 of float64 for
    every colour, where 2p/255 - 1 in float32 loses up to 1.2e-5 near grey."""
    x = (2 * r - 255).to(tl.float32)
    y = (2 * g - 255).to(tl.float32)
    z = (2 * b - 255).to(tl.float32)
    length2 = ((2 * r - 255) * (2 * r - 255) + (2 * g - 255) * (2 * g - 255)
               + (2 * b - 255) * (2 * b - 255)).to(tl.float32)
    inv = tl.math.rsqrt(length2)
    norm = tl.sqrt(length2) * 0.00392156862745098  # |n| = sqrt(length2) / 255
    tiny = norm < eps
    inv = tl.where(tiny, 0.0, inv)
    if FLIP_YZ:
        inv_yz = -inv
    else:
        inv_yz = inv
    return x * inv, y * inv_yz, z * inv_yz, norm


@triton.jit
def _normals_quads_kernel(
    p_rgb, p_out, p_norm, P, eps,
    FLIP_YZ: tl.constexpr, HAS_NORM: tl.constexpr, BLOCK: tl.constexpr,
):
    """Normals of a flat-contiguous uint8 batch: word loads, 12 outputs per lane stored as
    three 4-vectors (x0 y0 z0 x1 | y1 z1 x2 y2 | z2 x3 y3 z3)."""
    pid = tl.program_id(0).to(tl.int64)
    if (pid + 1) * (4 * BLOCK) <= P:
        grp = pid * BLOCK + tl.arange(0, BLOCK)
        r0, g0, b0, r1, g1, b1, r2, g2, b2, r3, g3, b3 = cm.load_quads(p_rgb, grp)
        x0, y0, z0, n0 = _unit_u8(r0, g0, b0, eps, FLIP_YZ)
        x1, y1, z1, n1 = _unit_u8(r1, g1, b1, eps, FLIP_YZ)
        x2, y2, z2, n2 = _unit_u8(r2, g2, b2, eps, FLIP_YZ)
        x3, y3, z3, n3 = _unit_u8(r3, g3, b3, eps, FLIP_YZ)
        o = (pid * (12 * BLOCK) + 12 * tl.arange(0, BLOCK))[:, None] + tl.arange(0, 4)[None, :]
        tl.store(p_out + o, cm.cast_for(cm.interleave4_rows(x0, y0, z0, x1, BLOCK), p_out))
        tl.store(p_out + (o + 4), cm.cast_for(cm.interleave4_rows(y1, z1, x2, y2, BLOCK), p_out))
        tl.store(p_out + (o + 8), cm.cast_for(cm.interleave4_rows(z2, x3, y3, z3, BLOCK), p_out))
        if HAS_NORM:
            cm.store_quads(p_norm, pid, n0, n1, n2, n3, BLOCK)
    else:
        i, mask = cm.tail_pixels(pid, P, BLOCK)
        r, g, b = cm.load_pixel_bytes(p_rgb, i, mask)
        x, y, z, n = _unit_u8(r, g, b, eps, FLIP_YZ)
        tl.store(p_out + 3 * i, cm.cast_for(x, p_out), mask=mask)
        tl.store(p_out + 3 * i + 1, cm.cast_for(y, p_out), mask=mask)
        tl.store(p_out + 3 * i + 2, cm.cast_for(z, p_out), mask=mask)
        if HAS_NORM:
            tl.store(p_norm + i, n.to(p_norm.dtype.element_ty), mask=mask)


@triton.autotune(
    configs=cm.row_configs(),
    key=cm.TUNE_KEY,
    prune_configs_by={"early_config_prune": cm.prune_wide_blocks},
)
@triton.jit
def _decode_normals_kernel(
    p_rgb, p_out, p_norm, H, W,
    sr_n, sr_h, sr_w, sr_c,
    so_n, so_h, so_w, so_c,
    sm_n, sm_h, sm_w,
    eps,
    W_BUCKET, CH_CONTIG,
    IS_U8: tl.constexpr, IS_F64: tl.constexpr, FLIP_YZ: tl.constexpr,
    HAS_NORM: tl.constexpr, BLOCK_W: tl.constexpr,
):
    o_rgb, m_pix = cm.pixel_offsets(H, W, sr_n, sr_h, sr_w, BLOCK_W)
    b_r, b_g, b_b, m_nan = cm.load_units(p_rgb, o_rgb, sr_c, m_pix, IS_U8, IS_F64)
    if IS_U8:
        x, y, z, norm = _unit_u8(b_r, b_g, b_b, eps, FLIP_YZ)
    else:
        # n = units * (2/255) - 1 as the reference. A NaN channel makes the whole pixel NaN
        # (the clamp may have dropped it), and NaN then flows through norm and division.
        x = tl.where(m_nan, float("nan"), cm.to_float(b_r, IS_F64) * 0.00784313725490196 - 1.0)
        y = cm.to_float(b_g, IS_F64) * 0.00784313725490196 - 1.0
        z = cm.to_float(b_b, IS_F64) * 0.00784313725490196 - 1.0
        norm = tl.sqrt(x * x + y * y + z * z)
        # `norm < eps` is False for NaN, so a NaN pixel stays NaN rather than becoming zero.
        tiny = norm < eps
        safe = tl.where(tiny, 1.0, norm)
        x = tl.where(tiny, 0.0, x / safe)
        y = tl.where(tiny, 0.0, y / safe)
        z = tl.where(tiny, 0.0, z / safe)
        if FLIP_YZ:
            y = -y
            z = -z
    o_out, _ = cm.pixel_offsets(H, W, so_n, so_h, so_w, BLOCK_W)
    tl.store(p_out + o_out, cm.cast_for(x, p_out), mask=m_pix)
    tl.store(p_out + o_out + so_c, cm.cast_for(y, p_out), mask=m_pix)
    tl.store(p_out + o_out + 2 * so_c, cm.cast_for(z, p_out), mask=m_pix)
    if HAS_NORM:
        o_norm, _ = cm.pixel_offsets(H, W, sm_n, sm_h, sm_w, BLOCK_W)
        tl.store(p_norm + o_norm, norm.to(p_norm.dtype.element_ty), mask=m_pix)


def decode_path(rgb: torch.Tensor, normals: torch.Tensor, norm: torch.Tensor | None) -> str:
    """"quad" (word loads, flat-contiguous aligned uint8) or "rows" (any view)."""
    return "quad" if cm.takes_quad_path(rgb, normals, norm) else "rows"


def decode_normals(rgb, normals, norm, flip_yz, eps) -> None:
    if cm.empty(rgb):
        return
    norm_view = normals if norm is None else norm  # a valid pointer; unused without HAS_NORM
    if decode_path(rgb, normals, norm) == "quad":
        grid, opts = cm.quad_launch(rgb.numel() // 3)
        _normals_quads_kernel[grid](rgb, normals, norm_view, rgb.numel() // 3, float(eps),
                                    FLIP_YZ=bool(flip_yz), HAS_NORM=norm is not None, **opts)
        return
    n, h, w, _ = rgb.shape
    _decode_normals_kernel[cm.row_grid(n, h, w)](
        rgb, normals, norm_view, h, w,
        *rgb.stride(),
        *normals.stride(),
        *cm.strides3(norm_view),
        float(eps),
        cm.width_bucket(w), cm.channel_contiguous(rgb),
        IS_U8=rgb.dtype == torch.uint8, IS_F64=rgb.dtype == torch.float64,
        FLIP_YZ=bool(flip_yz), HAS_NORM=norm is not None,
    )


@triton.jit
def _encode_channel(p_rgb, offsets, n, mask, OUT_U8: tl.constexpr):
    """p = round(255*(n+1)/2) clamped to 0..255 (float64, as the reference)."""
    units = tl.minimum(tl.maximum(255.0 * (n + 1.0) / 2.0, 0.0), 255.0)
    if OUT_U8:
        units = tl.where(units != units, 0.0, cm.round_half_even_f64(units))
        tl.store(p_rgb + offsets, units.to(tl.uint8), mask=mask)
    else:
        tl.store(p_rgb + offsets, cm.cast_for(units / 255.0, p_rgb), mask=mask)


@triton.autotune(
    configs=cm.row_configs(),
    key=cm.TUNE_KEY,
    prune_configs_by={"early_config_prune": cm.prune_wide_blocks},
)
@triton.jit
def _encode_normals_kernel(
    p_n, p_rgb, H, W,
    si_n, si_h, si_w, si_c,
    so_n, so_h, so_w, so_c,
    W_BUCKET, CH_CONTIG,
    FLIP_YZ: tl.constexpr, OUT_U8: tl.constexpr, BLOCK_W: tl.constexpr,
):
    o_n, m_pix = cm.pixel_offsets(H, W, si_n, si_h, si_w, BLOCK_W)
    x = tl.load(p_n + o_n, mask=m_pix, other=0).to(tl.float64)
    y = tl.load(p_n + o_n + si_c, mask=m_pix, other=0).to(tl.float64)
    z = tl.load(p_n + o_n + 2 * si_c, mask=m_pix, other=0).to(tl.float64)
    if FLIP_YZ:
        y = -y
        z = -z
    o_rgb, _ = cm.pixel_offsets(H, W, so_n, so_h, so_w, BLOCK_W)
    _encode_channel(p_rgb, o_rgb, x, m_pix, OUT_U8)
    _encode_channel(p_rgb, o_rgb + so_c, y, m_pix, OUT_U8)
    _encode_channel(p_rgb, o_rgb + 2 * so_c, z, m_pix, OUT_U8)


def encode_normals(normals, rgb, flip_yz) -> None:
    if cm.empty(normals):
        return
    n, h, w, _ = normals.shape
    _encode_normals_kernel[cm.row_grid(n, h, w)](
        normals, rgb, h, w,
        *normals.stride(),
        *rgb.stride(),
        cm.width_bucket(w), cm.channel_contiguous(rgb),
        FLIP_YZ=bool(flip_yz), OUT_U8=rgb.dtype == torch.uint8,
    )
