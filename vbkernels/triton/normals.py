"""Surface normals from linearly mapped RGB and back (docs/format.md, Normals), one pass per
pixel."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _common as cm


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


def decode_normals(rgb, normals, norm, flip_yz, eps) -> None:
    if cm.empty(rgb):
        return
    n, h, w, _ = rgb.shape
    norm_view = normals if norm is None else norm  # a valid pointer; unused without HAS_NORM
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
