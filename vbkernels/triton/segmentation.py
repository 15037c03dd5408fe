"""Nearest-palette labels (docs/format.md, Segmentation) and palette painting.

Decoding scans the palette in tiles of up to 64 colours held in registers: a K <= 64
palette (binary masks, Cityscapes' 19) is one tile loaded once per program; larger
palettes loop over tiles. Within a tile the lowest index among the minima wins and tiles
merge with a strict ``<``, so ties go to the lowest palette index, as in the reference.
Distances are ``(dr^2 + dg^2) + db^2`` in float32 (float64 for float64 input): exact for
uint8 images and integer palettes (every value < 2^24).

For uint8 images and large palettes on CUDA, ``decode_segmentation`` can instead build a
2^24-entry table "colour -> nearest label" once per palette (cached) and gather from it;
see ``use_label_table`` for when.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _common as cm

MAX_TILE_K = 64


@triton.jit
def _nearest_colour(b_r, b_g, b_b, p_pal, K, BLOCK_K: tl.constexpr):
    """Index of and squared distance to the nearest palette colour, per pixel of a block."""
    o_k = tl.arange(0, BLOCK_K)
    best = tl.full(b_r.shape, float("inf"), b_r.dtype)
    label = tl.zeros(b_r.shape, tl.int32)
    for k0 in range(0, K, BLOCK_K):
        o_pal = k0 + o_k
        m_pal = o_pal < K
        c_r = tl.load(p_pal + o_pal * 3, mask=m_pal, other=0).to(b_r.dtype)
        c_g = tl.load(p_pal + o_pal * 3 + 1, mask=m_pal, other=0).to(b_r.dtype)
        c_b = tl.load(p_pal + o_pal * 3 + 2, mask=m_pal, other=0).to(b_r.dtype)
        d_r = b_r[:, None] - c_r[None, :]
        d_g = b_g[:, None] - c_g[None, :]
        d_b = b_b[:, None] - c_b[None, :]
        dist2 = (d_r * d_r + d_g * d_g) + d_b * d_b
        dist2 = tl.where(m_pal[None, :], dist2, float("inf"))
        tile_best = tl.min(dist2, axis=1)
        # Lowest index among the tile's minima, spelled out rather than tl.argmin: its tie
        # order is a flag the interpreter ignores, so CI could not catch a wrong one.
        is_min = dist2 == tile_best[:, None]
        tile_label = tl.min(tl.where(is_min, o_pal[None, :], 2147483647), axis=1)
        better = tile_best < best
        best = tl.where(better, tile_best, best)
        label = tl.where(better, tile_label, label)
    return label, best


@triton.jit
def _finish_labels(
    label, dist2, nan, p_labels, o_labels, p_dist, o_dist, mask, max_dist2, ignore_index,
    HAS_MAX: tl.constexpr, HAS_DIST: tl.constexpr,
):
    """Apply NaN / max-distance dropping and store labels (and distances)."""
    drop = nan
    if HAS_MAX:
        drop = drop | (dist2 > max_dist2)
    label = tl.where(drop, ignore_index, label)
    tl.store(p_labels + o_labels, label.to(p_labels.dtype.element_ty), mask=mask)
    if HAS_DIST:
        dist = tl.where(nan, float("nan"), tl.sqrt(dist2.to(tl.float32)))
        tl.store(p_dist + o_dist, dist.to(p_dist.dtype.element_ty), mask=mask)


def _seg_configs():
    # Each program holds BLOCK_W x BLOCK_K distances, so blocks stay narrower than for the
    # purely elementwise kernels.
    return cm.row_configs(shapes=((128, 4), (256, 4)))


@triton.autotune(
    configs=_seg_configs(),
    key=cm.TUNE_KEY + ["BLOCK_K"],
    prune_configs_by={"early_config_prune": cm.prune_wide_blocks},
)
@triton.jit
def _decode_segmentation_kernel(
    p_rgb, p_pal, p_labels, p_dist, H, W, K,
    sr_n, sr_h, sr_w, sr_c,
    sl_n, sl_h, sl_w,
    sd_n, sd_h, sd_w,
    max_dist2, ignore_index,
    W_BUCKET, CH_CONTIG,
    IS_U8: tl.constexpr, IS_F64: tl.constexpr, HAS_MAX: tl.constexpr,
    HAS_DIST: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_W: tl.constexpr,
):
    o_rgb, m_pix = cm.pixel_offsets(H, W, sr_n, sr_h, sr_w, BLOCK_W)
    b_r, b_g, b_b, m_nan = cm.load_units(p_rgb, o_rgb, sr_c, m_pix, IS_U8, IS_F64)
    label, dist2 = _nearest_colour(
        cm.to_float(b_r, IS_F64), cm.to_float(b_g, IS_F64), cm.to_float(b_b, IS_F64),
        p_pal, K, BLOCK_K,
    )
    o_labels, _ = cm.pixel_offsets(H, W, sl_n, sl_h, sl_w, BLOCK_W)
    o_dist, _ = cm.pixel_offsets(H, W, sd_n, sd_h, sd_w, BLOCK_W)
    _finish_labels(
        label, dist2, m_nan, p_labels, o_labels, p_dist, o_dist, m_pix, max_dist2,
        ignore_index, HAS_MAX, HAS_DIST,
    )


def _tile_k(k: int) -> int:
    return min(MAX_TILE_K, max(16, triton.next_power_of_2(k)))


def _decode_by_distance(rgb, palette, labels, distance, max_dist2, ignore_index) -> None:
    n, h, w, _ = rgb.shape
    dist = labels if distance is None else distance
    _decode_segmentation_kernel[cm.row_grid(n, h, w)](
        rgb, palette, labels, dist, h, w, palette.shape[0],
        *rgb.stride(),
        *cm.strides3(labels),
        *cm.strides3(dist),
        0.0 if max_dist2 is None else float(max_dist2), int(ignore_index),
        cm.width_bucket(w), cm.channel_contiguous(rgb),
        IS_U8=rgb.dtype == torch.uint8, IS_F64=rgb.dtype == torch.float64,
        HAS_MAX=max_dist2 is not None, HAS_DIST=distance is not None,
        BLOCK_K=_tile_k(palette.shape[0]),
    )


def decode_segmentation(rgb, palette, labels, distance, max_dist2, ignore_index) -> None:
    if cm.empty(rgb):
        return
    table = _cached_table(palette) if use_label_table(rgb, palette) else None
    if decode_path(rgb, labels, distance) == "quad":
        _decode_quads(rgb, palette, table, labels, distance, max_dist2, ignore_index)
    elif table is not None:
        lookup_labels(rgb, table, palette, labels, distance, max_dist2, ignore_index)
    else:
        _decode_by_distance(rgb, palette, labels, distance, max_dist2, ignore_index)


def decode_path(rgb: torch.Tensor, labels: torch.Tensor, distance: torch.Tensor | None) -> str:
    """"quad" (word loads, flat-contiguous aligned uint8) or "rows" (any view)."""
    return "quad" if cm.takes_quad_path(rgb, labels, distance) else "rows"


# --- uint8 quads: word loads, the palette scan or the table gather, vector label stores ----

@triton.jit
def _scan_step(b_r, b_g, b_b, c_r, c_g, c_b, k, best, label):
    """One palette colour against a pixel slot; strict < keeps the lowest index on ties."""
    d_r = b_r - c_r
    d_g = b_g - c_g
    d_b = b_b - c_b
    dist2 = (d_r * d_r + d_g * d_g) + d_b * d_b
    better = dist2 < best
    # int32 whatever K's width: the label is loop-carried.
    return tl.where(better, dist2, best), tl.where(better, k, label).to(tl.int32)


@triton.jit
def _table_label(r, g, b, p_table, p_pal, NEED_DIST2: tl.constexpr):
    label = tl.load(p_table + ((r << 16) | (g << 8) | b)).to(tl.int32)
    if NEED_DIST2:
        d_r = r.to(tl.float32) - tl.load(p_pal + label * 3)
        d_g = g.to(tl.float32) - tl.load(p_pal + label * 3 + 1)
        d_b = b.to(tl.float32) - tl.load(p_pal + label * 3 + 2)
        dist2 = (d_r * d_r + d_g * d_g) + d_b * d_b
    else:
        dist2 = tl.zeros(r.shape, tl.float32)
    return label, dist2


@triton.jit
def _drop(label, dist2, max_dist2, ignore_index, HAS_MAX: tl.constexpr):
    if HAS_MAX:
        label = tl.where(dist2 > max_dist2, ignore_index, label)
    return label


@triton.jit
def _seg_quads_kernel(
    p_rgb, p_pal, p_table, p_labels, p_dist, P, K, max_dist2, ignore_index,
    USE_TABLE: tl.constexpr, HAS_MAX: tl.constexpr, HAS_DIST: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Labels of a flat-contiguous uint8 batch. Four pixel slots per lane share each palette
    colour's (uniform) loads in the scan; with ``USE_TABLE`` each pixel is one gather."""
    pid = tl.program_id(0).to(tl.int64)
    if (pid + 1) * (4 * BLOCK) <= P:
        grp = pid * BLOCK + tl.arange(0, BLOCK)
        r0, g0, b0, r1, g1, b1, r2, g2, b2, r3, g3, b3 = cm.load_quads(p_rgb, grp)
        if USE_TABLE:
            l0, e0 = _table_label(r0, g0, b0, p_table, p_pal, HAS_MAX or HAS_DIST)
            l1, e1 = _table_label(r1, g1, b1, p_table, p_pal, HAS_MAX or HAS_DIST)
            l2, e2 = _table_label(r2, g2, b2, p_table, p_pal, HAS_MAX or HAS_DIST)
            l3, e3 = _table_label(r3, g3, b3, p_table, p_pal, HAS_MAX or HAS_DIST)
        else:
            f_r0, f_g0, f_b0 = r0.to(tl.float32), g0.to(tl.float32), b0.to(tl.float32)
            f_r1, f_g1, f_b1 = r1.to(tl.float32), g1.to(tl.float32), b1.to(tl.float32)
            f_r2, f_g2, f_b2 = r2.to(tl.float32), g2.to(tl.float32), b2.to(tl.float32)
            f_r3, f_g3, f_b3 = r3.to(tl.float32), g3.to(tl.float32), b3.to(tl.float32)
            e0 = tl.full((BLOCK,), float("inf"), tl.float32)
            e1 = e0
            e2 = e0
            e3 = e0
            l0 = tl.zeros((BLOCK,), tl.int32)
            l1 = l0
            l2 = l0
            l3 = l0
            for k in range(K):
                c_r = tl.load(p_pal + 3 * k)
                c_g = tl.load(p_pal + 3 * k + 1)
                c_b = tl.load(p_pal + 3 * k + 2)
                e0, l0 = _scan_step(f_r0, f_g0, f_b0, c_r, c_g, c_b, k, e0, l0)
                e1, l1 = _scan_step(f_r1, f_g1, f_b1, c_r, c_g, c_b, k, e1, l1)
                e2, l2 = _scan_step(f_r2, f_g2, f_b2, c_r, c_g, c_b, k, e2, l2)
                e3, l3 = _scan_step(f_r3, f_g3, f_b3, c_r, c_g, c_b, k, e3, l3)
        cm.store_quads(p_labels, pid,
                       _drop(l0, e0, max_dist2, ignore_index, HAS_MAX),
                       _drop(l1, e1, max_dist2, ignore_index, HAS_MAX),
                       _drop(l2, e2, max_dist2, ignore_index, HAS_MAX),
                       _drop(l3, e3, max_dist2, ignore_index, HAS_MAX), BLOCK)
        if HAS_DIST:
            cm.store_quads(p_dist, pid, tl.sqrt(e0), tl.sqrt(e1), tl.sqrt(e2), tl.sqrt(e3),
                           BLOCK)
    else:
        i, mask = cm.tail_pixels(pid, P, BLOCK)
        r, g, b = cm.load_pixel_bytes(p_rgb, i, mask)
        if USE_TABLE:
            label, dist2 = _table_label(r, g, b, p_table, p_pal, True)
        else:
            label, dist2 = _nearest_colour(r.to(tl.float32), g.to(tl.float32),
                                           b.to(tl.float32), p_pal, K, 16)
        label = _drop(label, dist2, max_dist2, ignore_index, HAS_MAX)
        tl.store(p_labels + i, label.to(p_labels.dtype.element_ty), mask=mask)
        if HAS_DIST:
            tl.store(p_dist + i, tl.sqrt(dist2).to(p_dist.dtype.element_ty), mask=mask)


# Pixel groups per program of the quad segmentation kernel: the scan keeps 4 x 3 channels
# plus 4 x (best, label) per group in registers, so blocks are narrower than elsewhere.
SEG_QUAD_BLOCK = 128


def _decode_quads(rgb, palette, table, labels, distance, max_dist2, ignore_index) -> None:
    pixels = rgb.numel() // 3
    grid, opts = cm.quad_launch(pixels)
    if not cm.interpreting():
        opts["BLOCK"] = SEG_QUAD_BLOCK
        grid = (triton.cdiv(pixels, 4 * SEG_QUAD_BLOCK),)
    _seg_quads_kernel[grid](
        rgb, palette, palette if table is None else table, labels,
        labels if distance is None else distance, pixels, palette.shape[0],
        0.0 if max_dist2 is None else float(max_dist2), int(ignore_index),
        USE_TABLE=table is not None, HAS_MAX=max_dist2 is not None,
        HAS_DIST=distance is not None, **opts,
    )


# --- 2^24-entry label table for uint8 images -------------------------------------------

# A table costs 2^24 * K distance evaluations to build, once per palette; a direct decode
# costs pixels * K. Measured on an H200 (bench/results/nvidia-h200-device-check.md, 8 x
# 1920x1080 uint8): the lookup took 0.20-0.24 ms for every K from 19 to 1000, the scan 1.1 ms at
# K=19 and 2.8 ms at K=64, and building the K=19 table 1.9 ms once. The table wins from the
# second frame for any K >= 16; below that the scan is kept.
TABLE_MIN_K = 16
# Don't build a table for a batch much smaller than the table itself.
TABLE_MIN_PIXELS = 1 << 20
# At most 4 label tables (<= 256 MB), by palette.
_TABLES = cm.DeviceTables(kept=4)


def use_label_table(rgb: torch.Tensor, palette: torch.Tensor) -> bool:
    """Table path: uint8 CUDA image, large palette, big batch, not inside graph capture.

    Looking a palette up in the cache compares its contents on the device (a sync), which
    CUDA graph capture forbids; captured calls take the distance scan instead.
    """
    if rgb.dtype != torch.uint8 or rgb.device.type != "cuda" or cm.interpreting():
        return False
    if palette.shape[0] < TABLE_MIN_K:
        return False
    if rgb.shape[0] * rgb.shape[1] * rgb.shape[2] < TABLE_MIN_PIXELS:
        return False
    return not torch.cuda.is_current_stream_capturing()


def _table_dtype(k: int) -> torch.dtype:
    return torch.uint8 if k <= 256 else torch.int16 if k <= 32768 else torch.int32


@triton.jit
def _build_table_kernel(
    p_pal, p_table, K, first, count, BLOCK: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Nearest label of every colour index in [first, first + count), index = r<<16|g<<8|b."""
    o_idx = first + tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m_idx = o_idx < first + count
    b_r = ((o_idx >> 16) & 255).to(tl.float32)
    b_g = ((o_idx >> 8) & 255).to(tl.float32)
    b_b = (o_idx & 255).to(tl.float32)
    label, _ = _nearest_colour(b_r, b_g, b_b, p_pal, K, BLOCK_K)
    tl.store(p_table + o_idx, label.to(p_table.dtype.element_ty), mask=m_idx)


def build_label_table(palette: torch.Tensor, first: int = 0, count: int = 1 << 24,
                      table: torch.Tensor | None = None) -> torch.Tensor:
    """Fill ``table[first:first+count]`` with nearest labels (the whole table by default)."""
    k = palette.shape[0]
    if table is None:
        table = torch.empty(1 << 24, dtype=_table_dtype(k), device=palette.device)
    block = cm.INTERPRETER_BLOCK_W if cm.interpreting() else 256
    _build_table_kernel[(triton.cdiv(count, block),)](
        palette, table, k, first, count, BLOCK=block, BLOCK_K=_tile_k(k),
        num_warps=1 if cm.interpreting() else 4,
    )
    return table


def _cached_table(palette: torch.Tensor) -> torch.Tensor:
    """The label table of ``palette``, built on first use; the newest few are kept."""
    return _TABLES.get((palette,), lambda: build_label_table(palette))


@triton.autotune(
    configs=cm.row_configs(),
    key=cm.TUNE_KEY,
    prune_configs_by={"early_config_prune": cm.prune_wide_blocks},
)
@triton.jit
def _lookup_kernel(
    p_rgb, p_table, p_pal, p_labels, p_dist, H, W,
    sr_n, sr_h, sr_w, sr_c,
    sl_n, sl_h, sl_w,
    sd_n, sd_h, sd_w,
    max_dist2, ignore_index,
    W_BUCKET, CH_CONTIG,
    HAS_MAX: tl.constexpr, HAS_DIST: tl.constexpr, BLOCK_W: tl.constexpr,
):
    """Labels of a uint8 image by table gather; dist2 recomputed from the chosen colour."""
    o_rgb, m_pix = cm.pixel_offsets(H, W, sr_n, sr_h, sr_w, BLOCK_W)
    b_r, b_g, b_b, m_nan = cm.load_units(p_rgb, o_rgb, sr_c, m_pix, True, False)
    label = tl.load(p_table + ((b_r << 16) | (b_g << 8) | b_b), mask=m_pix, other=0).to(tl.int32)
    d_r = b_r.to(tl.float32) - tl.load(p_pal + label * 3, mask=m_pix, other=0)
    d_g = b_g.to(tl.float32) - tl.load(p_pal + label * 3 + 1, mask=m_pix, other=0)
    d_b = b_b.to(tl.float32) - tl.load(p_pal + label * 3 + 2, mask=m_pix, other=0)
    dist2 = (d_r * d_r + d_g * d_g) + d_b * d_b
    o_labels, _ = cm.pixel_offsets(H, W, sl_n, sl_h, sl_w, BLOCK_W)
    o_dist, _ = cm.pixel_offsets(H, W, sd_n, sd_h, sd_w, BLOCK_W)
    _finish_labels(
        label, dist2, m_nan, p_labels, o_labels, p_dist, o_dist, m_pix, max_dist2,
        ignore_index, HAS_MAX, HAS_DIST,
    )


def lookup_labels(rgb, table, palette, labels, distance, max_dist2, ignore_index) -> None:
    """Decode a uint8 image through a prebuilt label table (exposed for tests)."""
    if cm.empty(rgb):
        return
    n, h, w, _ = rgb.shape
    dist = labels if distance is None else distance
    _lookup_kernel[cm.row_grid(n, h, w)](
        rgb, table, palette, labels, dist, h, w,
        *rgb.stride(),
        *cm.strides3(labels),
        *cm.strides3(dist),
        0.0 if max_dist2 is None else float(max_dist2), int(ignore_index),
        cm.width_bucket(w), cm.channel_contiguous(rgb),
        HAS_MAX=max_dist2 is not None, HAS_DIST=distance is not None,
    )


# --- painting ---------------------------------------------------------------------------

@triton.autotune(
    configs=cm.row_configs(),
    key=cm.TUNE_KEY,
    prune_configs_by={"early_config_prune": cm.prune_wide_blocks},
)
@triton.jit
def _encode_segmentation_kernel(
    p_labels, p_pal, p_ignore, p_rgb, H, W, K,
    sl_n, sl_h, sl_w,
    so_n, so_h, so_w, so_c,
    W_BUCKET, CH_CONTIG,
    BLOCK_W: tl.constexpr,
):
    o_labels, m_pix = cm.pixel_offsets(H, W, sl_n, sl_h, sl_w, BLOCK_W)
    label = tl.load(p_labels + o_labels, mask=m_pix, other=0).to(tl.int64)
    valid = (label >= 0) & (label < K)
    o_pal = tl.where(valid, label, 0) * 3
    o_rgb, _ = cm.pixel_offsets(H, W, so_n, so_h, so_w, BLOCK_W)
    for ch in tl.static_range(3):
        colour = tl.load(p_pal + o_pal + ch, mask=m_pix & valid, other=0)
        ignore = tl.load(p_ignore + ch)
        tl.store(p_rgb + o_rgb + ch * so_c, tl.where(valid, colour, ignore), mask=m_pix)


def encode_segmentation(labels, palette, rgb, ignore_color) -> None:
    if cm.empty(labels):
        return
    n, h, w = labels.shape
    _encode_segmentation_kernel[cm.row_grid(n, h, w)](
        labels, palette, ignore_color, rgb, h, w, palette.shape[0],
        *cm.strides3(labels),
        *rgb.stride(),
        cm.width_bucket(w), cm.channel_contiguous(rgb),
    )
