"""Colormap inversion (docs/format.md, Colormaps): each pixel's nearest point on the
colormap's polyline through RGB space, as ``reference/colormap.py`` specifies it.

Direct path: a program takes a block of one image row and scans the M - 1 segments in
ascending order, each segment's two vertices loaded as scalars (uniform loads shared by the
block), keeping the best squared distance, its fraction ``s`` (as a quotient, divided once
at the end) and its segment with a strict ``<`` (ties to the lowest segment). ``t`` is
formed once at the end from the chosen segment's positions. Work dtype as the reference's:
float64 for uint8 and float64 images, float32 for the other floats.

Exactness for uint8: every product and sum before the two divisions is an integer below
2^53, so it is exact whether or not the compiler contracts it into an FMA; the divisions
and the square root are correctly rounded (``_div``, ``_sqrt``: float32 ``/`` and
``tl.sqrt`` may be approximate on a GPU). The one place where contraction would change bits
is ``t = start + s * span`` (an FMA rounds once where the reference rounds twice, and the
float32 result could then differ in the last place after the float64 -> float32 rounding),
so the kernels are compiled with ``enable_fp_fusion=False`` (``LAUNCH_OPTIONS``), and
``tests/test_triton_colormap.py`` checks the sm_90 PTX for the absence of ``fma``.

uint8 batches on CUDA of at least ``TABLE_MIN_PIXELS`` pixels instead gather from a cached
2^24-entry table colour -> (t, distance) per polyline, built on the device by the same
search over all 2^24 colours (``build_colour_table``), so both paths agree bit for bit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import triton
import triton.language as tl

from . import _common as cm

# No FMA contraction: the reference rounds t = start + s * span twice (see above).
LAUNCH_OPTIONS = {"enable_fp_fusion": False}
# Pixels per program of the row kernels on a GPU (the scan is compute bound: the width
# matters little), and of the table build.
BLOCK_W = 256
NUM_WARPS = 4
BUILD_BLOCK = 256


@triton.jit
def _div(x, y):
    """Correctly rounded x / y: float64 ``/`` is ``div.rn.f64`` on NVIDIA GPUs, float32 ``/``
    may be approximate, so float32 takes ``div_rn``."""
    if x.dtype == tl.float64:
        q = x / y
    else:
        q = tl.math.div_rn(x, y)
    return q


@triton.jit
def _sqrt(x):
    """Correctly rounded square root (``sqrt.rn.f64`` for float64, ``sqrt_rn`` for float32)."""
    if x.dtype == tl.float64:
        r = tl.sqrt(x)
    else:
        r = tl.math.sqrt_rn(x)
    return r


@triton.jit
def _nearest_on_polyline(x_r, x_g, x_b, p_col, M):
    """``(dist2, s, j)`` of a pixel block (0..255 units, work dtype) on the polyline whose
    M float64 vertices are at ``p_col``: the contract's before / after / inner cases.

    The fraction is kept as a quotient ``s_num / s_den`` (0/1 before, 1/1 after, dot/L
    inside) and divided once for the chosen segment: the same correctly rounded value,
    one division per segment fewer."""
    wdt = x_r.dtype
    a_r = tl.load(p_col).to(wdt)
    a_g = tl.load(p_col + 1).to(wdt)
    a_b = tl.load(p_col + 2).to(wdt)
    best = tl.full(x_r.shape, float("inf"), wdt)
    best_num = tl.zeros(x_r.shape, wdt)
    best_den = tl.full(x_r.shape, 1.0, wdt)
    best_j = tl.zeros(x_r.shape, tl.int32)
    for j in range(M - 1):
        b_r = tl.load(p_col + 3 * j + 3).to(wdt)
        b_g = tl.load(p_col + 3 * j + 4).to(wdt)
        b_b = tl.load(p_col + 3 * j + 5).to(wdt)
        d_r = b_r - a_r
        d_g = b_g - a_g
        d_b = b_b - a_b
        length2 = (d_r * d_r + d_g * d_g) + d_b * d_b
        e_r = x_r - a_r
        e_g = x_g - a_g
        e_b = x_b - a_b
        dot = (e_r * d_r + e_g * d_g) + e_b * d_b
        ee = (e_r * e_r + e_g * e_g) + e_b * e_b
        before = dot <= 0
        after = dot >= length2
        safe = tl.where(length2 > 0, length2, 1.0)
        inner = _div(tl.maximum(ee * length2 - dot * dot, 0.0), safe)
        # Float rounding can take the after case below 0 at a vertex: clamp like the reference.
        past = ee - 2 * dot + length2
        past = tl.where(past > 0, past, 0.0)
        dist2 = tl.where(before, ee, tl.where(after, past, inner))
        s_num = tl.where(before, 0.0, tl.where(after, 1.0, dot))
        s_den = tl.where(before | after, 1.0, safe)
        better = dist2 < best
        best = tl.where(better, dist2, best)
        best_num = tl.where(better, s_num, best_num)
        best_den = tl.where(better, s_den, best_den)
        best_j = tl.where(better, j, best_j)
        a_r = b_r
        a_g = b_g
        a_b = b_b
    return best, _div(best_num, best_den), best_j


@triton.jit
def _position(best_s, best_j, p_pos, mask):
    """``t = start + s * span`` of the chosen segments, positions rounded to the work dtype
    first (as the reference converts them), with two roundings as the reference has them.

    Computed in float64 for uint8, an FMA here would move the float64 result by at most an
    ulp, which changes the float32 ``t`` only next to a float32 rounding boundary: rare, but
    not never. Hence LAUNCH_OPTIONS; the residual risk, a compiler that contracts despite
    it, is what the sm_90 PTX test (no ``fma``) guards against."""
    wdt = best_s.dtype
    start = tl.load(p_pos + best_j, mask=mask, other=0.0).to(wdt)
    end = tl.load(p_pos + best_j + 1, mask=mask, other=0.0).to(wdt)
    return start + best_s * (end - start)


@triton.jit
def _store(t, distance, nan, p_t, o_t, p_dist, o_dist, mask, max_distance,
           HAS_MAX: tl.constexpr, HAS_DIST: tl.constexpr):
    """NaN pixels and (with HAS_MAX) pixels whose float32 distance exceeds max_distance get
    NaN t; NaN pixels get NaN distance."""
    distance = tl.where(nan, float("nan"), distance)
    drop = nan
    if HAS_MAX:
        drop = drop | (distance > max_distance)
    t = tl.where(drop, float("nan"), t)
    tl.store(p_t + o_t, t.to(p_t.dtype.element_ty), mask=mask)
    if HAS_DIST:
        tl.store(p_dist + o_dist, distance, mask=mask)


@triton.jit
def _decode_colormap_kernel(
    p_rgb, p_col, p_pos, p_t, p_dist, H, W, M,
    sr_n, sr_h, sr_w, sr_c,
    st_n, st_h, st_w,
    sd_n, sd_h, sd_w,
    max_distance,
    IS_U8: tl.constexpr, IS_F64: tl.constexpr, WORK_F64: tl.constexpr,
    HAS_MAX: tl.constexpr, HAS_DIST: tl.constexpr, BLOCK_W: tl.constexpr,
):
    o_rgb, m_pix = cm.pixel_offsets(H, W, sr_n, sr_h, sr_w, BLOCK_W)
    x_r, x_g, x_b, nan = cm.load_units(p_rgb, o_rgb, sr_c, m_pix, IS_U8, IS_F64)
    dist2, s, j = _nearest_on_polyline(cm.to_float(x_r, WORK_F64), cm.to_float(x_g, WORK_F64),
                                       cm.to_float(x_b, WORK_F64), p_col, M)
    t = _position(s, j, p_pos, m_pix)
    distance = _sqrt(dist2).to(tl.float32)
    o_t, _ = cm.pixel_offsets(H, W, st_n, st_h, st_w, BLOCK_W)
    o_dist, _ = cm.pixel_offsets(H, W, sd_n, sd_h, sd_w, BLOCK_W)
    _store(t, distance, nan, p_t, o_t, p_dist, o_dist, m_pix, max_distance, HAS_MAX, HAS_DIST)


def _launch_options() -> dict:
    """Row-kernel launch options (the interpreter ignores ``enable_fp_fusion``)."""
    if cm.interpreting():
        return {"BLOCK_W": cm.INTERPRETER_BLOCK_W, "num_warps": 1, **LAUNCH_OPTIONS}
    return {"BLOCK_W": BLOCK_W, "num_warps": NUM_WARPS, **LAUNCH_OPTIONS}


def _max_arg(max_distance) -> float:
    return 0.0 if max_distance is None else float(max_distance)


def decode_direct(rgb, colours, positions, t, distance, max_distance) -> None:
    """The segment scan over any (N, H, W, 3) view (exposed for tests and benchmarks)."""
    n, h, w, _ = rgb.shape
    dist = t if distance is None else distance
    opts = _launch_options()
    _decode_colormap_kernel[(n * h, triton.cdiv(w, opts["BLOCK_W"]))](
        rgb, colours, positions, t, dist, h, w, colours.shape[0],
        *rgb.stride(), *cm.strides3(t), *cm.strides3(dist), _max_arg(max_distance),
        IS_U8=rgb.dtype == torch.uint8, IS_F64=rgb.dtype == torch.float64,
        WORK_F64=rgb.dtype in (torch.uint8, torch.float64),
        HAS_MAX=max_distance is not None, HAS_DIST=distance is not None, **opts,
    )


def decode_colormap(rgb, colours, positions, t, distance, max_distance) -> None:
    if cm.empty(rgb):
        return
    colours, positions = colours.contiguous(), positions.contiguous()
    if use_colour_table(rgb):
        lookup(rgb, cached_table(colours, positions), t, distance, max_distance)
    else:
        decode_direct(rgb, colours, positions, t, distance, max_distance)


# --- 2^24-entry colour table for uint8 images --------------------------------------------

# Building the table is the direct search over 2^24 colours, once per polyline; a gather
# then replaces the M - 1 segment scan per pixel. A batch of at least the table's own size
# pays for the build within that one call (build <= one direct decode of the batch) and
# every later batch of the video gains. Not yet measured on a GPU: the device check times
# both paths (decode_colormap_turbo vs decode_colormap_turbo_direct).
TABLE_MIN_PIXELS = 1 << 24
TABLE_SIZE = 1 << 24
# (t table, distance table) pairs by polyline (colours, positions); 128 MB each, two kept.
_TABLES = cm.DeviceTables(kept=2)


@contextlib.contextmanager
def direct_path() -> Iterator[None]:
    """Within the block, every batch takes the direct path (the benchmark times both paths
    on the same batch)."""
    global TABLE_MIN_PIXELS
    saved, TABLE_MIN_PIXELS = TABLE_MIN_PIXELS, float("inf")
    try:
        yield
    finally:
        TABLE_MIN_PIXELS = saved


def use_colour_table(rgb: torch.Tensor) -> bool:
    """Table path: a uint8 CUDA batch of at least TABLE_MIN_PIXELS, not inside graph capture
    (finding a cached table compares polylines on the device: a sync)."""
    if rgb.dtype != torch.uint8 or rgb.device.type != "cuda" or cm.interpreting():
        return False
    if rgb.shape[0] * rgb.shape[1] * rgb.shape[2] < TABLE_MIN_PIXELS:
        return False
    return not torch.cuda.is_current_stream_capturing()


@triton.jit
def _build_table_kernel(p_col, p_pos, p_t, p_dist, M, first, count, BLOCK: tl.constexpr):
    """(t, distance) of every colour index in [first, first + count), index = r<<16|g<<8|b,
    by the direct path's own search and rounding (float64 work, float32 results)."""
    o_idx = first + tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = o_idx < first + count
    x_r = ((o_idx >> 16) & 255).to(tl.float64)
    x_g = ((o_idx >> 8) & 255).to(tl.float64)
    x_b = (o_idx & 255).to(tl.float64)
    dist2, s, j = _nearest_on_polyline(x_r, x_g, x_b, p_col, M)
    t = _position(s, j, p_pos, mask)
    tl.store(p_t + o_idx, t.to(tl.float32), mask=mask)
    tl.store(p_dist + o_idx, _sqrt(dist2).to(tl.float32), mask=mask)


def build_colour_table(colours: torch.Tensor, positions: torch.Tensor, first: int = 0,
                       count: int = TABLE_SIZE, table: tuple | None = None) -> tuple:
    """Fill entries [first, first + count) of a (t, distance) table pair (float32, 2^24
    entries each; the whole table by default) and return the pair."""
    if table is None:
        table = tuple(torch.empty(TABLE_SIZE, dtype=torch.float32, device=colours.device)
                      for _ in range(2))
    block = cm.INTERPRETER_BLOCK_W if cm.interpreting() else BUILD_BLOCK
    _build_table_kernel[(triton.cdiv(count, block),)](
        colours, positions, table[0], table[1], colours.shape[0], first, count,
        BLOCK=block, num_warps=1 if cm.interpreting() else NUM_WARPS, **LAUNCH_OPTIONS,
    )
    return table


def cached_table(colours: torch.Tensor, positions: torch.Tensor) -> tuple:
    """The table pair of a polyline, built on first use; the newest two are kept."""
    return _TABLES.get((colours, positions), lambda: build_colour_table(colours, positions))


@triton.jit
def _lookup_kernel(
    p_rgb, p_tt, p_td, p_t, p_dist, H, W,
    sr_n, sr_h, sr_w, sr_c,
    st_n, st_h, st_w,
    sd_n, sd_h, sd_w,
    max_distance,
    NEED_DIST: tl.constexpr, HAS_MAX: tl.constexpr, HAS_DIST: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """(t, distance) of a uint8 view by gathering both from the tables at r<<16|g<<8|b."""
    o_rgb, m_pix = cm.pixel_offsets(H, W, sr_n, sr_h, sr_w, BLOCK_W)
    r, g, b, nan = cm.load_units(p_rgb, o_rgb, sr_c, m_pix, True, False)
    idx = (r << 16) | (g << 8) | b
    t = tl.load(p_tt + idx, mask=m_pix, other=0.0)
    if NEED_DIST:
        distance = tl.load(p_td + idx, mask=m_pix, other=0.0)
    else:
        distance = tl.zeros(t.shape, tl.float32)
    o_t, _ = cm.pixel_offsets(H, W, st_n, st_h, st_w, BLOCK_W)
    o_dist, _ = cm.pixel_offsets(H, W, sd_n, sd_h, sd_w, BLOCK_W)
    _store(t, distance, nan, p_t, o_t, p_dist, o_dist, m_pix, max_distance, HAS_MAX, HAS_DIST)


def lookup(rgb, table: tuple, t, distance, max_distance) -> None:
    """Decode a uint8 view through a (t, distance) table pair (exposed for tests)."""
    if cm.empty(rgb):
        return
    n, h, w, _ = rgb.shape
    dist = t if distance is None else distance
    opts = _launch_options()
    _lookup_kernel[(n * h, triton.cdiv(w, opts["BLOCK_W"]))](
        rgb, table[0], table[1], t, dist, h, w,
        *rgb.stride(), *cm.strides3(t), *cm.strides3(dist), _max_arg(max_distance),
        NEED_DIST=distance is not None or max_distance is not None,
        HAS_MAX=max_distance is not None, HAS_DIST=distance is not None, **opts,
    )
