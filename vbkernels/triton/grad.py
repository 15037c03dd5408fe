"""Fused backward of ``decode_depth``, ``hilbert_project`` and ``decode_normals`` for float
images (docs/format.md, Gradients).

One pass per pixel: read its three channels and the incoming gradients, recompute the
segment choice (with the tie count) or the normal exactly as ``vbkernels.reference.grad``
does, write the three input gradients. Nothing from the forward is stored. The rules and the torch
reference it is tested against are in ``vbkernels/reference/grad.py``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._walk import SEGMENTS
from ..reference._common import work_dtype
from . import _common as cm
from .depth import _nearest_segment

# Per-segment bit masks (bit k describes segment k), from vbkernels._walk.SEGMENTS.
_VARIES = [tl.constexpr(sum(1 << k for k, s in enumerate(SEGMENTS) if s.varying == ch))
           for ch in range(3)]
_VARIES_R, _VARIES_G, _VARIES_B = _VARIES
_FALLING = tl.constexpr(sum(1 << k for k, s in enumerate(SEGMENTS) if not s.rising))


def _fixed_at_255(ch: int) -> tl.constexpr:
    return tl.constexpr(sum(1 << k for k, s in enumerate(SEGMENTS)
                            if (s.fixed_a == ch and s.value_a) or (s.fixed_b == ch and s.value_b)))


_HIGH_R, _HIGH_G, _HIGH_B = (_fixed_at_255(ch) for ch in range(3))


@triton.jit
def _bit(mask, k):
    # A tensor first: the interpreter cannot shift a constexpr.
    return ((tl.zeros_like(k) + mask) >> k) & 1


@triton.jit
def _ties(r, g, b, best):
    """How many of the 7 segments are exactly ``best`` away (1 unless the pixel is a tie)."""
    rr = 255.0 - r
    gg = 255.0 - g
    bb = 255.0 - b
    n = (g * g + b * b == best).to(tl.int32)
    n += (rr * rr + b * b == best).to(tl.int32)
    n += (gg * gg + b * b == best).to(tl.int32)
    n += (r * r + gg * gg == best).to(tl.int32)
    n += (r * r + bb * bb == best).to(tl.int32)
    n += (g * g + bb * bb == best).to(tl.int32)
    n += (rr * rr + bb * bb == best).to(tl.int32)
    return n


@triton.jit
def _channel_grad(x, p, k, coef_t, coef_d, VARIES: tl.constexpr, HIGH: tl.constexpr):
    """One channel's gradient: ``±coef_t/7`` if it varies on segment k, else the distance
    term ``coef_d * (p - V) * 255``; zero where the decoder clamped it."""
    varies = _bit(VARIES, k) != 0
    sign = 1.0 - 2.0 * _bit(_FALLING, k).to(x.dtype)
    value = 255.0 * _bit(HIGH, k).to(x.dtype)
    grad = tl.where(varies, coef_t * sign / 7.0, coef_d * (p - value) * 255.0)
    return tl.where((x >= 0.0) & (x <= 1.0), grad, 0.0)


@triton.jit
def _decode_depth_backward_kernel(
    p_rgb, p_gdepth, p_gdist, p_grad, P, lam_c_a, a, scale, max_depth,
    HAS_DEPTH: tl.constexpr, HAS_DIST: tl.constexpr, HAS_MAX: tl.constexpr,
    T_ONLY: tl.constexpr, BLOCK: tl.constexpr,
):
    """``T_ONLY``: ``p_gdepth`` holds the gradient of ``t`` (hilbert_project), not depth."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = i < P
    x_r = tl.load(p_rgb + 3 * i, mask=m, other=0.0)
    x_g = tl.load(p_rgb + 3 * i + 1, mask=m, other=0.0)
    x_b = tl.load(p_rgb + 3 * i + 2, mask=m, other=0.0)
    c_r = tl.minimum(tl.maximum(x_r, 0.0), 1.0)
    c_g = tl.minimum(tl.maximum(x_g, 0.0), 1.0)
    c_b = tl.minimum(tl.maximum(x_b, 0.0), 1.0)
    r = c_r * 255.0
    g = c_g * 255.0
    b = c_b * 255.0
    k, s, c, best = _nearest_segment(r, g, b, c_r, 1.0 - c_r, c_g, 1.0 - c_g, c_b, 1.0 - c_b)
    live = (_ties(r, g, b, best) == 1) & (x_r == x_r) & (x_g == x_g) & (x_b == x_b)
    zero = tl.zeros_like(x_r)
    coef_t = zero
    if T_ONLY:
        coef_t = tl.where(live, tl.load(p_gdepth + i, mask=m, other=0.0).to(x_r.dtype), 0.0)
    elif HAS_DEPTH:
        kf = k.to(x_r.dtype)
        t = (kf + s) / 7.0
        u = ((6.0 - kf) + c) / 7.0
        white = u <= 0.0
        log_small = cm.log1p_small(-tl.where(t < 0.5, t, 0.0))
        log_u = tl.where(t < 0.5, log_small, tl.log(tl.where(white, 1.0, u)))
        keep = live & (white == 0)
        if HAS_MAX:
            keep = keep & (scale * cm.expm1(log_u * a) <= max_depth)
        g_depth = tl.load(p_gdepth + i, mask=m, other=0.0).to(x_r.dtype)
        coef_t = tl.where(keep, g_depth * lam_c_a * tl.exp(log_u * (a - 1.0)), 0.0)
    coef_d = zero
    if HAS_DIST:
        on_walk = best == 0.0
        g_dist = tl.load(p_gdist + i, mask=m, other=0.0).to(x_r.dtype)
        coef_d = tl.where(live & (on_walk == 0), g_dist / tl.sqrt(tl.where(on_walk, 1.0, best)),
                          0.0)
    tl.store(p_grad + 3 * i, _channel_grad(x_r, r, k, coef_t, coef_d, _VARIES_R, _HIGH_R),
             mask=m)
    tl.store(p_grad + 3 * i + 1, _channel_grad(x_g, g, k, coef_t, coef_d, _VARIES_G, _HIGH_G),
             mask=m)
    tl.store(p_grad + 3 * i + 2, _channel_grad(x_b, b, k, coef_t, coef_d, _VARIES_B, _HIGH_B),
             mask=m)


def _backward_buffers(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(x, grad, pixels)`` for a backward kernel: the float image as a contiguous copy in
    the working dtype, an uninitialised gradient of the same layout, and the pixel count."""
    x = rgb.to(work_dtype(rgb.dtype)).contiguous()
    return x, torch.empty_like(x), x.numel() // 3


def decode_depth_backward(rgb: torch.Tensor, grad_depth: torch.Tensor | None,
                          grad_distance: torch.Tensor | None, lam: float, c: float,
                          max_depth: float | None, t_only: bool = False) -> torch.Tensor:
    """The gradient of ``decode_depth`` with respect to the float image ``rgb`` (N, H, W, 3),
    as ``vbkernels.reference.grad.decode_depth_backward`` computes it, in one kernel; with
    ``t_only``, that of ``hilbert_project`` (``grad_depth`` is then the gradient of ``t``).

    Works in float32 (float64 for float64 input) on contiguous copies of the inputs."""
    x, grad, pixels = _backward_buffers(rgb)
    if pixels == 0:
        return grad.to(rgb.dtype)
    g_depth = x if grad_depth is None else grad_depth.contiguous()
    g_dist = x if grad_distance is None else grad_distance.contiguous()
    a = 1.0 / (lam + 1.0)
    block = 128 if cm.interpreting() else 1024
    _decode_depth_backward_kernel[(triton.cdiv(pixels, block),)](
        x, g_depth, g_dist, grad, pixels, lam * c * a, a, -lam * c,
        0.0 if max_depth is None else float(max_depth),
        HAS_DEPTH=grad_depth is not None, HAS_DIST=grad_distance is not None,
        HAS_MAX=max_depth is not None, T_ONLY=t_only, BLOCK=block,
    )
    return grad.to(rgb.dtype)


@triton.jit
def _decode_normals_backward_kernel(
    p_rgb, p_gnormals, p_gnorm, p_grad, P, eps,
    HAS_NORMALS: tl.constexpr, HAS_NORM: tl.constexpr, FLIP_YZ: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """``2 * ((g - n (n.g))/|m| + n g_norm)`` with ``m = 2 clamp(x) - 1``, ``n = m/|m|``; zero
    below ``eps``, for NaN pixels and clamped channels (``ref_grad.decode_normals_backward``)."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = i < P
    x_r = tl.load(p_rgb + 3 * i, mask=m, other=0.0)
    x_g = tl.load(p_rgb + 3 * i + 1, mask=m, other=0.0)
    x_b = tl.load(p_rgb + 3 * i + 2, mask=m, other=0.0)
    m_r = tl.minimum(tl.maximum(x_r, 0.0), 1.0) * 2.0 - 1.0
    m_g = tl.minimum(tl.maximum(x_g, 0.0), 1.0) * 2.0 - 1.0
    m_b = tl.minimum(tl.maximum(x_b, 0.0), 1.0) * 2.0 - 1.0
    length = tl.sqrt((m_r * m_r + m_g * m_g) + m_b * m_b)
    # tl.maximum drops a NaN (fmax), so NaN pixels are caught from the input itself.
    live = (length >= eps) & (x_r == x_r) & (x_g == x_g) & (x_b == x_b)
    length = tl.where(live, length, 1.0)
    n_r = m_r / length
    n_g = m_g / length
    n_b = m_b / length
    zero = tl.zeros_like(x_r)
    d_r = zero
    d_g = zero
    d_b = zero
    if HAS_NORMALS:
        g_r = tl.load(p_gnormals + 3 * i, mask=m, other=0.0).to(x_r.dtype)
        g_g = tl.load(p_gnormals + 3 * i + 1, mask=m, other=0.0).to(x_r.dtype)
        g_b = tl.load(p_gnormals + 3 * i + 2, mask=m, other=0.0).to(x_r.dtype)
        if FLIP_YZ:
            g_g = -g_g
            g_b = -g_b
        dot = n_r * g_r + n_g * g_g + n_b * g_b
        d_r = (g_r - n_r * dot) / length
        d_g = (g_g - n_g * dot) / length
        d_b = (g_b - n_b * dot) / length
    if HAS_NORM:
        g_n = tl.load(p_gnorm + i, mask=m, other=0.0).to(x_r.dtype)
        d_r += n_r * g_n
        d_g += n_g * g_n
        d_b += n_b * g_n
    tl.store(p_grad + 3 * i, tl.where(live & (x_r >= 0.0) & (x_r <= 1.0), 2.0 * d_r, 0.0),
             mask=m)
    tl.store(p_grad + 3 * i + 1, tl.where(live & (x_g >= 0.0) & (x_g <= 1.0), 2.0 * d_g, 0.0),
             mask=m)
    tl.store(p_grad + 3 * i + 2, tl.where(live & (x_b >= 0.0) & (x_b <= 1.0), 2.0 * d_b, 0.0),
             mask=m)


def decode_normals_backward(rgb: torch.Tensor, grad_normals: torch.Tensor | None,
                            grad_norm: torch.Tensor | None, flip_yz: bool,
                            eps: float) -> torch.Tensor:
    """The gradient of ``decode_normals`` with respect to the float image ``rgb``
    (N, H, W, 3), as ``vbkernels.reference.grad.decode_normals_backward`` computes it, in
    one kernel, on contiguous copies of the inputs."""
    x, grad, pixels = _backward_buffers(rgb)
    if pixels == 0:
        return grad.to(rgb.dtype)
    g_normals = x if grad_normals is None else grad_normals.contiguous()
    g_norm = x if grad_norm is None else grad_norm.contiguous()
    block = 128 if cm.interpreting() else 1024
    _decode_normals_backward_kernel[(triton.cdiv(pixels, block),)](
        x, g_normals, g_norm, grad, pixels, eps,
        HAS_NORMALS=grad_normals is not None, HAS_NORM=grad_norm is not None,
        FLIP_YZ=flip_yz, BLOCK=block,
    )
    return grad.to(rgb.dtype)


# --------------------------------------------------------------------- segmentation_logits


@triton.jit
def _logits_forward_kernel(p_rgb, s_n, s_h, s_w, s_c, p_pal, p_out, P, HW, W, K, neg_t,
                           IS_U8: tl.constexpr, IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    """``d2 / -temperature`` of each pixel to each palette colour, (N, K, H, W) contiguous:
    one read of the pixel, K writes, each class plane written coalesced."""
    o_pix = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m_pix = o_pix < P
    n = o_pix // HW
    rem = o_pix % HW
    o_in = n * s_n + (rem // W) * s_h + (rem % W) * s_w
    r, g, b, nan = cm.load_units(p_rgb, o_in, s_c, m_pix, IS_U8, IS_F64)
    r = cm.to_float(r, IS_F64)
    g = cm.to_float(g, IS_F64)
    b = cm.to_float(b, IS_F64)
    p_o = p_out + n * K * HW + rem
    for k in range(0, K):
        c_r = tl.load(p_pal + 3 * k)
        c_g = tl.load(p_pal + 3 * k + 1)
        c_b = tl.load(p_pal + 3 * k + 2)
        d_r = r - c_r
        d_g = g - c_g
        d_b = b - c_b
        # The reference's order: ((d_r^2 + d_g^2) + d_b^2) / -temperature.
        logit = (d_r * d_r + d_g * d_g + d_b * d_b) / neg_t
        logit = tl.where(nan, float("nan"), logit)
        tl.store(p_o + k * HW, logit, mask=m_pix)


@triton.jit
def _logits_backward_kernel(p_rgb, p_pal, p_glog, p_grad, P, HW, K, scale,
                            IS_F64: tl.constexpr, BLOCK: tl.constexpr):
    """``d loss / d x`` for contiguous (P, 3) float pixels: ``sum_k g_k * scale * (p - c_k)``
    per channel with ``scale = 2 * 255 / -temperature``; zero for a clamped channel and for
    a NaN pixel (whose logits are NaN)."""
    o_pix = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m_pix = o_pix < P
    x_r = tl.load(p_rgb + 3 * o_pix, mask=m_pix, other=0.0)
    x_g = tl.load(p_rgb + 3 * o_pix + 1, mask=m_pix, other=0.0)
    x_b = tl.load(p_rgb + 3 * o_pix + 2, mask=m_pix, other=0.0)
    nan = (x_r != x_r) | (x_g != x_g) | (x_b != x_b)
    u_r = tl.minimum(tl.maximum(x_r, 0.0), 1.0) * 255.0
    u_g = tl.minimum(tl.maximum(x_g, 0.0), 1.0) * 255.0
    u_b = tl.minimum(tl.maximum(x_b, 0.0), 1.0) * 255.0
    acc_r = tl.zeros_like(u_r)
    acc_g = tl.zeros_like(u_g)
    acc_b = tl.zeros_like(u_b)
    n = o_pix // HW
    p_g = p_glog + n * K * HW + o_pix % HW
    for k in range(0, K):
        g = tl.load(p_g + k * HW, mask=m_pix, other=0.0)
        acc_r += g * (u_r - tl.load(p_pal + 3 * k))
        acc_g += g * (u_g - tl.load(p_pal + 3 * k + 1))
        acc_b += g * (u_b - tl.load(p_pal + 3 * k + 2))
    keep_r = (x_r >= 0.0) & (x_r <= 1.0) & ~nan
    keep_g = (x_g >= 0.0) & (x_g <= 1.0) & ~nan
    keep_b = (x_b >= 0.0) & (x_b <= 1.0) & ~nan
    tl.store(p_grad + 3 * o_pix, tl.where(keep_r, acc_r * scale, 0.0), mask=m_pix)
    tl.store(p_grad + 3 * o_pix + 1, tl.where(keep_g, acc_g * scale, 0.0), mask=m_pix)
    tl.store(p_grad + 3 * o_pix + 2, tl.where(keep_b, acc_b * scale, 0.0), mask=m_pix)


def _logits_block() -> int:
    return 128 if cm.interpreting() else 256


def segmentation_logits_forward(rgb: torch.Tensor, palette: torch.Tensor,
                                temperature: float) -> torch.Tensor:
    """(N, H, W, 3) pixels (any strides, uint8 or float) -> (N, K, H, W) logits in float32
    (float64 for float64 input), as ``vbkernels.reference.grad.segmentation_logits``."""
    work = work_dtype(rgb.dtype)
    n, h, w, _ = rgb.shape
    colours = palette.to(device=rgb.device, dtype=work).contiguous()
    k = colours.shape[0]
    out = torch.empty((n, k, h, w), dtype=work, device=rgb.device)
    pixels = n * h * w
    if pixels == 0:
        return out
    block = _logits_block()
    _logits_forward_kernel[(triton.cdiv(pixels, block),)](
        rgb, *rgb.stride(), colours, out, pixels, h * w, w, k, -float(temperature),
        IS_U8=rgb.dtype == torch.uint8, IS_F64=work == torch.float64, BLOCK=block)
    return out


def segmentation_logits_backward(rgb: torch.Tensor, palette: torch.Tensor,
                                 grad_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The gradient of the logits with respect to the float image ``rgb`` (N, H, W, 3), in
    one kernel; works on contiguous copies in the working dtype."""
    x, grad, pixels = _backward_buffers(rgb)
    if pixels == 0:
        return grad.to(rgb.dtype)
    work = x.dtype
    n, h, w, _ = rgb.shape
    colours = palette.to(device=rgb.device, dtype=work).contiguous()
    block = _logits_block()
    _logits_backward_kernel[(triton.cdiv(pixels, block),)](
        x, colours, grad_logits.to(work).contiguous(), grad, pixels, h * w,
        colours.shape[0], 2.0 * 255.0 / -float(temperature), IS_F64=work == torch.float64,
        BLOCK=block)
    return grad.to(rgb.dtype)


# As torch ops, so that torch.func's wrapped tensors are unwrapped before the kernels see
# them (a Triton launch cannot read a functorch wrapper's storage).
@torch.library.custom_op("vbkernels::segmentation_logits_triton", mutates_args=())
def _logits_op(rgb: torch.Tensor, palette: torch.Tensor, temperature: float) -> torch.Tensor:
    return segmentation_logits_forward(rgb, palette, temperature)


@_logits_op.register_fake
def _(rgb, palette, temperature):
    work = work_dtype(rgb.dtype)
    n, h, w, _ = rgb.shape
    return rgb.new_empty((n, palette.shape[0], h, w), dtype=work)


@torch.library.custom_op("vbkernels::segmentation_logits_backward_triton", mutates_args=())
def _logits_backward_op(rgb: torch.Tensor, palette: torch.Tensor, grad_logits: torch.Tensor,
                        temperature: float) -> torch.Tensor:
    return segmentation_logits_backward(rgb, palette, grad_logits, temperature)


@_logits_backward_op.register_fake
def _(rgb, palette, grad_logits, temperature):
    return torch.empty_like(rgb, memory_format=torch.contiguous_format)


def _logits_setup_context(ctx, inputs, output):
    rgb, palette, temperature = inputs
    ctx.save_for_backward(rgb, palette)
    ctx.temperature = temperature


def _logits_backward(ctx, grad_logits):
    rgb, palette = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None, None
    if torch._C._are_functorch_transforms_active():
        # torch.func batches the backward with vmap: the same sum in vmappable torch ops.
        return _logits_backward_torch(rgb, palette, grad_logits, ctx.temperature), None, None
    return _logits_backward_op(rgb, palette, grad_logits, ctx.temperature), None, None


def _logits_backward_torch(rgb, palette, grad_logits, temperature):
    """``_logits_backward_kernel`` in torch ops: ``scale * (u * sum_k g_k - sum_k g_k c_k)``
    per channel, zero for clamped channels and NaN pixels."""
    work = work_dtype(rgb.dtype)
    x = rgb.to(work)
    keep = (x >= 0) & (x <= 1) & ~torch.isnan(x).any(-1, keepdim=True)
    g = grad_logits.to(work)
    weighted = torch.einsum("nkhw,kc->nhwc", g, palette.to(work))
    grad = (x.clamp(0, 1) * 255 * g.sum(1).unsqueeze(-1) - weighted) * (2 * 255 / -temperature)
    return torch.where(keep, grad, torch.zeros((), dtype=work, device=x.device)).to(rgb.dtype)


# The op's own autograd serves eager autograd and torch.compile; the Function below, with
# the same backward, serves torch.func transforms too (they need setup_context).
_logits_op.register_autograd(_logits_backward, setup_context=_logits_setup_context)


class SegmentationLogits(torch.autograd.Function):
    """``SegmentationLogits.apply(rgb, palette, temperature)``: the fused forward and
    backward as one autograd node, usable under ``torch.func``."""

    @staticmethod
    def forward(rgb, palette, temperature):
        return _logits_op(rgb, palette, temperature)

    setup_context = staticmethod(_logits_setup_context)
    backward = staticmethod(_logits_backward)
