"""``decode_instances`` after its histogram, on the device: peaks, merge, refine, labels.

``vbkernels.instances`` runs these steps as ~260 small torch ops with ~14 host syncs; here
they are a handful of Triton kernels over fixed-size (padded) per-image buffers, so no
data-dependent shape reaches the host until the output palette is sized:

==================  =======================================  ===========================
kernel              grid                                      reference step
==================  =======================================  ===========================
``peaks_kernel``    bin blocks x images                       ``_candidates`` (3x3x3 max)
``torch.topk``      one op                                    its stable sort, first C
``merge_kernel``    one program per image                     ``_suppress``
``stats_kernel``    bin blocks x images                       ``_nearest_bins``/``_bin_stats``
``refine_kernel``   one program per image                     ``_refine`` (+ ``_order``)
``assign_kernel``   pixel tiles x images (instances.py)       ``_assign``
``settle_kernel``   one program per image                     ``_label``'s drop and order
``relabel_kernel``  pixel tiles x images                      ``_relabel``
==================  =======================================  ===========================

Every step keeps the reference's integer fixed point, tie rules and orders, so the results
are bit-identical to it (tests/test_instance_search.py checks that under the interpreter).
C is ``MAX_CANDIDATES``: each image owns C candidate rows; a count per image says how many
are in use. Per-image programs are sequential over those rows (the greedy merge needs the
strongest-first order) and read one row's values as scalars from memory, written there
before a ``tl.debug_barrier`` (every thread of the program then sees them).

Host syncs: ``host_read`` is the only read of device memory, one per assign pass that is
followed by a check (at most 2 per batch, usually 1; see ``label_instances``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference import instances as ref
from .instances import LANES, SPAN, _image_slices, _lanes, _on_device, assign_kernel

# Histogram bins per program of the bin-parallel kernels (BINS is a multiple of both).
BIN_BLOCK = 1024
# Under the interpreter a program is a Python pass over numpy arrays: one per image is
# fastest (as instances.LANES_INTERPRETED). Results do not depend on the block size.
BIN_BLOCK_INTERPRETED = ref.BINS
# Per-image programs are latency bound; one warp keeps their reductions in shuffles.
IMAGE_WARPS = 1
INT32_MAX = tl.constexpr(2147483647)
# Assign passes at most: the first; after a drop of small instances every colour list is
# re-sorted by colour, which can move tie pixels, so a second pass may drop again; from
# then on the order is stable and a drop only grows the remaining colours (a pixel's
# nearest colour stays its nearest), so a third pass never drops.
MAX_ASSIGN_PASSES = 3

SIDE = tl.constexpr(ref.BINS_PER_CHANNEL)
BINS = tl.constexpr(ref.BINS)
BIN_SHIFT = tl.constexpr(ref.BIN_SHIFT)
Q_MAX = tl.constexpr(ref.Q_MAX)
HALF_BIN = tl.constexpr(1 << (ref.BIN_SHIFT - 1))
# Colour keys (R, G, B ascending) as one integer: (r * KEY_BASE + g) * KEY_BASE + b < 2^37.
KEY_BASE = tl.constexpr(ref.Q_MAX + 1)


def host_read(values: torch.Tensor) -> list:
    """The device path's only read of device memory (a host sync on CUDA); tests count it."""
    return values.tolist()


# --------------------------------------------------------------------------- helpers


@triton.jit
def round_div(num, den):
    """Integer num / den rounded half up, for num >= 0 and den > 0 (instances._round_div)."""
    return (2 * num + den) // (2 * den)


@triton.jit
def dist2(a_r, a_g, a_b, b_r, b_g, b_b):
    """Squared distance of int32 fixed-point colours (< 3 * 4080^2 < 2^31: exact)."""
    d_r, d_g, d_b = a_r - b_r, a_g - b_g, a_b - b_b
    return d_r * d_r + d_g * d_g + d_b * d_b


@triton.jit
def colour_key(c_r, c_g, c_b):
    return (c_r.to(tl.int64) * KEY_BASE + c_g) * KEY_BASE + c_b


@triton.jit
def store_rows(p_rows, index, c_r, c_g, c_b, mask):
    tl.store(p_rows + 3 * index, c_r, mask=mask)
    tl.store(p_rows + 3 * index + 1, c_g, mask=mask)
    tl.store(p_rows + 3 * index + 2, c_b, mask=mask)


@triton.jit
def load_rows(p_rows, index, mask):
    c_r = tl.load(p_rows + 3 * index, mask=mask, other=0)
    c_g = tl.load(p_rows + 3 * index + 1, mask=mask, other=0)
    c_b = tl.load(p_rows + 3 * index + 2, mask=mask, other=0)
    return c_r, c_g, c_b


@triton.jit
def suppress(p_colour, c_r, c_g, c_b, ok, o_row, count, merge_d2):
    """Greedy merge, strongest (lowest row) first: row i is kept when ``ok`` and no kept
    row before it is within ``merge_d2``. The colours are in registers and, for the scalar
    reads, at ``p_colour`` (row i at ``p_colour + 3 i``, written before a barrier)."""
    blocked = ~ok
    kept = o_row < 0
    for i in range(0, count):
        here = o_row == i
        # Row i's verdict broadcast to every row: a vector, since the interpreter mangles
        # the dtype of vector-with-scalar boolean operations.
        keep_i = (o_row * 0 + tl.max(tl.where(here & ~blocked, 1, 0), axis=0)) > 0
        i_r = tl.load(p_colour + 3 * i)
        i_g = tl.load(p_colour + 3 * i + 1)
        i_b = tl.load(p_colour + 3 * i + 2)
        close = dist2(c_r, c_g, c_b, i_r, i_g, i_b) <= merge_d2
        blocked = blocked | (close & keep_i)
        kept = kept | (here & keep_i)
    return kept


@triton.jit
def away_from_background(c_r, c_g, c_b, has_bg, bg_r, bg_g, bg_b, merge_d2):
    no_bg = (c_r * 0 + has_bg) == 0  # broadcast first (see suppress)
    return no_bg | (dist2(c_r, c_g, c_b, bg_r, bg_g, bg_b) > merge_d2)


@triton.jit
def rank_of(p_keys, key_a, key_c, o_row, count, C: tl.constexpr):
    """Each row's position in the order (key_a descending, key_c ascending, row ascending)
    of rows 0..count-1: the reference's stable sorts (``instances._order``). The keys are
    also at ``p_keys`` (key_a) and ``p_keys + C`` (key_c), written before a barrier."""
    rank = tl.zeros([C], tl.int32)
    for j in range(0, count):
        a_j = tl.load(p_keys + j)
        c_j = tl.load(p_keys + C + j)
        first = (a_j > key_a) | ((a_j == key_a) & ((c_j < key_c) | ((c_j == key_c) & (j < o_row))))
        rank += first.to(tl.int32)
    return rank


@triton.jit
def ranked(p_keys, key_a, key_c, o_row, count, C: tl.constexpr):
    """``rank_of`` after writing its keys to ``p_keys``."""
    tl.store(p_keys + o_row, key_a)
    tl.store(p_keys + C + o_row, key_c)
    tl.debug_barrier()
    return rank_of(p_keys, key_a, key_c, o_row, count, C)


@triton.jit
def bin_block(pid, BLOCK: tl.constexpr):
    """(image, bin indices, per-channel bin coordinates) of a program over BLOCK bins."""
    blocks: tl.constexpr = BINS // BLOCK
    image = (pid // blocks).to(tl.int64)
    o_bin = (pid % blocks) * BLOCK + tl.arange(0, BLOCK)
    return image, o_bin, o_bin // (SIDE * SIDE), (o_bin // SIDE) % SIDE, o_bin % SIDE


# --------------------------------------------------------------------------- kernels


@triton.jit
def peaks_kernel(count_flat, sum_flat, keys, colours, min_flat, BLOCK: tl.constexpr):
    """Candidate bins: flat count the maximum of its 3x3x3 neighbourhood (max_pool3d with
    its padding), at least ``min_flat`` flat pixels there. key = strength * BINS +
    (BINS - 1 - bin), or -1: descending keys are the reference's stable strength order.
    A candidate's colour is the mean of its neighbourhood's flat pixels."""
    image, o_bin, x, y, z = bin_block(tl.program_id(0), BLOCK)
    p_flat = count_flat + image * BINS
    p_sum = sum_flat + image * BINS * 3
    own = tl.load(p_flat + o_bin)
    top = own
    near = tl.zeros([BLOCK], tl.int64)
    s_r = tl.zeros([BLOCK], tl.int64)
    s_g = tl.zeros([BLOCK], tl.int64)
    s_b = tl.zeros([BLOCK], tl.int64)
    # A plain loop, not 27 unrolled copies: the kernel compiles in a fraction of the time.
    for d in range(0, 27):
        dx, dy, dz = d // 9 - 1, (d // 3) % 3 - 1, d % 3 - 1
        m = (x + dx >= 0) & (x + dx < SIDE) & (y + dy >= 0) & (y + dy < SIDE)
        m = m & (z + dz >= 0) & (z + dz < SIDE)
        j = o_bin + ((dx * SIDE + dy) * SIDE + dz)
        f = tl.load(p_flat + j, mask=m, other=0)
        top = tl.maximum(top, f)
        near += f
        p_j = p_sum + 3 * j
        s_r += tl.load(p_j, mask=m, other=0)
        s_g += tl.load(p_j + 1, mask=m, other=0)
        s_b += tl.load(p_j + 2, mask=m, other=0)
    m_cand = (own > 0) & (own >= top) & (near >= min_flat)
    tl.store(keys + image * BINS + o_bin, tl.where(m_cand, near * BINS + (BINS - 1 - o_bin), -1))
    den = tl.maximum(near, 1)
    store_rows(colours + image * BINS * 3, o_bin, round_div(s_r, den).to(tl.int32),
               round_div(s_g, den).to(tl.int32), round_div(s_b, den).to(tl.int32), m_cand)


@triton.jit
def merge_kernel(top_keys, colours, scratch, centres, num, merge_d2, has_bg, bg_r, bg_g, bg_b,
                 C: tl.constexpr):
    """The C strongest candidates of one image (``top_keys``, descending) -> the greedy
    merge's survivors, packed in candidate order into ``centres`` rows, their number
    into ``num``."""
    image = tl.program_id(0).to(tl.int64)
    o_row = tl.arange(0, C)
    key = tl.load(top_keys + image * C + o_row)
    m_live = key >= 0
    b_bin = tl.where(m_live, BINS - 1 - key % BINS, 0)
    c_r, c_g, c_b = load_rows(colours + image * BINS * 3, b_bin, m_live)
    p_scratch = scratch + image * C * 3
    store_rows(p_scratch, o_row, c_r, c_g, c_b, o_row >= 0)
    tl.debug_barrier()
    m_ok = m_live & away_from_background(c_r, c_g, c_b, has_bg, bg_r, bg_g, bg_b, merge_d2)
    count = tl.sum(m_live.to(tl.int32), axis=0)  # live rows come first
    kept = suppress(p_scratch, c_r, c_g, c_b, m_ok, o_row, count, merge_d2)
    pack(centres + image * C * 3, num + image, o_row, c_r, c_g, c_b, kept)


@triton.jit
def pack(p_rows, p_num, o_row, c_r, c_g, c_b, keep):
    """Rows where ``keep``, in order, to the front of ``p_rows``; their number to p_num."""
    keep32 = keep.to(tl.int32)
    store_rows(p_rows, tl.cumsum(keep32, axis=0) - 1, c_r, c_g, c_b, keep)
    tl.store(p_num, tl.sum(keep32, axis=0))


@triton.jit
def stats_kernel(count_all, count_flat, sum_flat, centres, num, pixels, flat, sums,
                 max_d2, has_bg, bg_r, bg_g, bg_b, C: tl.constexpr, BLOCK: tl.constexpr):
    """Each non-empty bin goes to its nearest colour (the background competing as row -1,
    ties to the lower row) within ``max_d2``; per colour: pixels, flat pixels, flat sums."""
    image, o_bin, x, y, z = bin_block(tl.program_id(0), BLOCK)
    o_at = image * BINS + o_bin
    n_all = tl.load(count_all + o_at)
    n_flat = tl.load(count_flat + o_at)
    s_r = tl.load(sum_flat + 3 * o_at)
    s_g = tl.load(sum_flat + 3 * o_at + 1)
    s_b = tl.load(sum_flat + 3 * o_at + 2)
    den = tl.maximum(n_flat, 1)
    m_mean = n_flat > 0
    b_r = tl.where(m_mean, round_div(s_r, den), tl.minimum((x << BIN_SHIFT) + HALF_BIN, Q_MAX))
    b_g = tl.where(m_mean, round_div(s_g, den), tl.minimum((y << BIN_SHIFT) + HALF_BIN, Q_MAX))
    b_b = tl.where(m_mean, round_div(s_b, den), tl.minimum((z << BIN_SHIFT) + HALF_BIN, Q_MAX))
    b_r, b_g, b_b = b_r.to(tl.int32), b_g.to(tl.int32), b_b.to(tl.int32)
    best_d2 = tl.where(has_bg != 0, dist2(b_r, b_g, b_b, bg_r, bg_g, bg_b), INT32_MAX)
    best = tl.full([BLOCK], -1, tl.int32)
    p_centre = centres + image * C * 3
    for k in range(0, tl.load(num + image)):
        d2 = dist2(b_r, b_g, b_b, tl.load(p_centre + 3 * k), tl.load(p_centre + 3 * k + 1),
                   tl.load(p_centre + 3 * k + 2))
        better = d2 < best_d2
        best_d2 = tl.where(better, d2, best_d2)
        best = tl.where(better, k, best)
    m = (n_all > 0) & (best >= 0) & (best_d2 <= max_d2)
    o_slot = image * C + best
    tl.atomic_add(pixels + o_slot, n_all, mask=m)
    tl.atomic_add(flat + o_slot, n_flat, mask=m)
    tl.atomic_add(sums + 3 * o_slot, s_r, mask=m)
    tl.atomic_add(sums + 3 * o_slot + 1, s_g, mask=m)
    tl.atomic_add(sums + 3 * o_slot + 2, s_b, mask=m)


@triton.jit
def refine_kernel(centres, num, pixels, flat, sums, scratch, keys, out, out_num,
                  min_pixels, min_flat, merge_d2, has_bg, bg_r, bg_g, bg_b, offset,
                  C: tl.constexpr, FINAL: tl.constexpr):
    """Colours move to the mean of their bins' flat pixels (those without flat pixels die).
    A middle round keeps the colours with enough pixels and merges again (rows packed into
    ``out``); the final round orders them by pixels (descending), colour (ascending) into
    ``out`` rows ``offset..`` (``out`` has C + 1 rows; row 0 is the background's)."""
    image = tl.program_id(0).to(tl.int64)
    o_row = tl.arange(0, C)
    count = tl.load(num + image)
    m_live = o_row < count
    c_r, c_g, c_b = load_rows(centres + image * C * 3, o_row, m_live)
    o_stat = image * C + o_row
    n_all = tl.load(pixels + o_stat)
    n_flat = tl.load(flat + o_stat)
    m_live = m_live & (n_flat > 0)
    den = tl.maximum(n_flat, 1)
    c_r = tl.where(m_live, round_div(tl.load(sums + 3 * o_stat), den).to(tl.int32), c_r)
    c_g = tl.where(m_live, round_div(tl.load(sums + 3 * o_stat + 1), den).to(tl.int32), c_g)
    c_b = tl.where(m_live, round_div(tl.load(sums + 3 * o_stat + 2), den).to(tl.int32), c_b)
    if FINAL:
        key_a = tl.where(m_live, n_all, -1)
        rank = ranked(keys + image * 2 * C, key_a, colour_key(c_r, c_g, c_b), o_row, count, C)
        store_rows(out + image * (C + 1) * 3, rank + offset, c_r, c_g, c_b, m_live)
        tl.store(out_num + image, tl.sum(m_live.to(tl.int32), axis=0) + offset)
    else:
        p_scratch = scratch + image * C * 3
        store_rows(p_scratch, o_row, c_r, c_g, c_b, o_row >= 0)
        tl.debug_barrier()
        m_ok = m_live & (n_all >= min_pixels) & (n_flat >= min_flat)
        m_ok = m_ok & away_from_background(c_r, c_g, c_b, has_bg, bg_r, bg_g, bg_b, merge_d2)
        kept = suppress(p_scratch, c_r, c_g, c_b, m_ok, o_row, count, merge_d2)
        pack(out + image * C * 3, out_num + image, o_row, c_r, c_g, c_b, kept)


@triton.jit
def settle_kernel(full, num_full, counts, keys, dropped, num_dropped, small, palette, found,
                  lut, reordered, min_pixels, offset, C: tl.constexpr):
    """After an assign pass over ``full`` (rows ``offset..``: the colours; counts: its
    (C + 2)-slot pixel counts): flag instances under ``min_pixels``; the survivors sorted by
    colour into ``dropped`` (the reference's re-sort after a drop, used when any image of
    the batch dropped one); and the final order (pixels descending, colour ascending): the
    int64 ``palette`` (rows past ``found`` zero) and the relabelling ``lut``."""
    image = tl.program_id(0).to(tl.int64)
    o_row = tl.arange(0, C)
    count = tl.load(num_full + image) - offset
    m_live = o_row < count
    c_r, c_g, c_b = load_rows(full + image * (C + 1) * 3, o_row + offset, m_live)
    n_px = tl.load(counts + image * (C + 2) + o_row + offset + 1, mask=m_live, other=0)
    m_small = m_live & (n_px < min_pixels)
    tl.store(small + image, tl.sum(m_small.to(tl.int32), axis=0))
    key_c = colour_key(c_r, c_g, c_b)
    p_keys = keys + image * 2 * C
    m_keep = m_live & ~m_small
    rank = ranked(p_keys, m_keep.to(tl.int64), key_c, o_row, count, C)
    store_rows(dropped + image * (C + 1) * 3, rank + offset, c_r, c_g, c_b, m_keep)
    tl.store(num_dropped + image, tl.sum(m_keep.to(tl.int32), axis=0) + offset)
    tl.debug_barrier()  # rank_of above has read p_keys: now they may be overwritten
    rank = ranked(p_keys, tl.where(m_live, n_px, -1), key_c, o_row, count, C)
    p_palette = palette + image * C * 3
    store_rows(p_palette, rank, c_r.to(tl.int64), c_g.to(tl.int64), c_b.to(tl.int64), m_live)
    store_rows(p_palette, o_row, tl.zeros([C], tl.int64), tl.zeros([C], tl.int64),
               tl.zeros([C], tl.int64), ~m_live)
    tl.store(found + image, count.to(tl.int64))
    tl.store(lut + image * (C + 1) + o_row + 1, rank + 1, mask=m_live)
    tl.store(reordered + image, tl.sum((m_live & (rank != o_row)).to(tl.int32), axis=0))


@triton.jit
def relabel_kernel(labels, height, width, n_pixels, lut, lut_stride, reordered,
                   LANES: tl.constexpr, SPAN: tl.constexpr):
    """Instance label ``l`` becomes ``lut[l]`` in the images whose order changed."""
    image = tl.program_id(1).to(tl.int64)
    o_pix = tl.program_id(0).to(tl.int64) * (LANES * SPAN) + tl.arange(0, LANES * SPAN)
    m = (o_pix < n_pixels) & ((o_pix * 0 + tl.load(reordered + image)) != 0)
    p_label = labels + image * n_pixels + o_pix
    label = tl.load(p_label, mask=m, other=0)
    m = m & (label > 0)
    tl.store(p_label, tl.load(lut + image * lut_stride + label, mask=m, other=0), mask=m)


# --------------------------------------------------------------------------- driver


class _Buffers:
    """The fixed-size per-image buffers of one call (C candidate rows per image). Left
    uninitialised: the kernels write every element they later read, and the accumulators
    (pixels, flat, sums, counts) are zeroed before each pass."""

    def __init__(self, n: int, c: int, device: torch.device):
        def buffer(*shape, dtype=torch.int32):
            return torch.empty(shape, dtype=dtype, device=device)

        self.scratch = buffer(n, c, 3)
        self.keys = buffer(n, 2, c, dtype=torch.int64)
        self.centres = [buffer(n, c, 3), buffer(n, c, 3)]
        self.num = [buffer(n), buffer(n)]
        self.pixels = buffer(n, c, dtype=torch.int64)
        self.flat = buffer(n, c, dtype=torch.int64)
        self.sums = buffer(n, c, 3, dtype=torch.int64)
        self.full = [buffer(n, c + 1, 3), buffer(n, c + 1, 3)]  # row 0: the background
        self.num_full = [buffer(n), buffer(n)]
        self.counts = buffer(n, c + 2, dtype=torch.int64)
        self.small = buffer(n)
        self.palette = buffer(n, c, 3, dtype=torch.int64)
        self.found = buffer(n, dtype=torch.int64)
        self.lut = buffer(n, c + 1)
        self.reordered = buffer(n)


def label_instances(rgb, count_all, count_flat, sum_flat, params, max_candidates: int,
                    rounds: int):
    """Steps 2-6 of ``decode_instances`` on the histograms of the (N, H, W, 3) view ``rgb``.

    ``params``: ``vbkernels.instances._Params`` (background as 3 fixed-point ints or None).
    Returns ``(labels, centres_q, counts)`` as the reference ``_decode`` does: (N, H, W)
    int32, (N, N_max, 3) int64, (N,) int64. Host syncs: one ``host_read`` after the first
    assign pass (any instance too small? and N_max), one more only when it dropped some.
    """
    n, height, width = rgb.shape[:3]
    c = max_candidates
    if c & (c - 1):
        raise ValueError(f"max_candidates must be a power of two, got {c}")
    has_bg = int(params.background_q is not None)
    bg = tuple(params.background_q) if has_bg else (0, 0, 0)
    common = dict(has_bg=has_bg, bg_r=bg[0], bg_g=bg[1], bg_b=bg[2])
    device = rgb.device
    buf = _Buffers(n, c, device)
    for full in buf.full:
        for channel, value in enumerate(bg):
            full[:, 0, channel] = value  # a fill: no host-to-device copy, no sync
    with _on_device(device):
        _find_colours(count_all, count_flat, sum_flat, params, c, rounds, buf, common)
        labels = torch.empty((n, height, width), dtype=torch.int32, device=device)
        width_out = _label_passes(rgb, labels, params, c, has_bg, buf)
        _relabel(labels, buf)
    return labels, buf.palette[:, :width_out], buf.found


def _find_colours(count_all, count_flat, sum_flat, p, c, rounds, buf, common):
    """Candidates, merge and refinement: the ordered colours into ``buf.full[0]``."""
    n = count_all.shape[0]
    device = count_all.device
    keys = torch.empty((n, ref.BINS), dtype=torch.int64, device=device)
    colours = torch.empty((n, ref.BINS, 3), dtype=torch.int32, device=device)
    block = BIN_BLOCK if device.type == "cuda" else BIN_BLOCK_INTERPRETED
    bin_grid = (n * (ref.BINS // block),)
    peaks_kernel[bin_grid](count_flat, sum_flat, keys, colours, p.min_flat, BLOCK=block)
    top = torch.topk(keys, c, dim=1).values  # unique keys: one order on every device
    merge_kernel[(n,)](top, colours, buf.scratch, buf.centres[0], buf.num[0], p.merge_dist2_q,
                       **common, C=c, num_warps=IMAGE_WARPS)
    for round_ in range(rounds + 1):
        final = round_ == rounds
        for t in (buf.pixels, buf.flat, buf.sums):
            t.zero_()
        stats_kernel[bin_grid](count_all, count_flat, sum_flat, buf.centres[0], buf.num[0],
                               buf.pixels, buf.flat, buf.sums, p.max_dist2_q, **common,
                               C=c, BLOCK=block)
        out, out_num = (buf.full[0], buf.num_full[0]) if final else (buf.centres[1], buf.num[1])
        refine_kernel[(n,)](buf.centres[0], buf.num[0], buf.pixels, buf.flat, buf.sums,
                            buf.scratch, buf.keys, out, out_num, p.min_pixels, p.min_flat,
                            p.merge_dist2_q, **common, offset=common["has_bg"], C=c,
                            FINAL=final, num_warps=IMAGE_WARPS)
        buf.centres.reverse()
        buf.num.reverse()


def _label_passes(rgb, labels, p, c, offset, buf) -> int:
    """Assign passes until no instance is under min_pixels (at most MAX_ASSIGN_PASSES, a
    ``host_read`` after each but the last); returns N_max, the largest count."""
    n, height, width = rgb.shape[:3]
    lanes = _lanes(rgb.device)
    width_out = 0
    for pass_ in range(MAX_ASSIGN_PASSES):
        buf.counts.zero_()
        for imgs in _image_slices(n):
            view, out = rgb[imgs], labels[imgs]
            grid = (triton.cdiv(height * width, lanes * SPAN), view.shape[0])
            assign_kernel[grid](
                view, *view.stride(), height, width, height * width,
                buf.full[0][imgs], buf.num_full[0][imgs], (c + 1) * 3, p.max_dist2_q,
                1 - offset, out, *out.stride(), buf.counts[imgs], buf.counts.stride(0),
                IS_FLOAT=rgb.is_floating_point(), LANES=lanes, SPAN=SPAN,
            )
        settle_kernel[(n,)](buf.full[0], buf.num_full[0], buf.counts, buf.keys, buf.full[1],
                            buf.num_full[1], buf.small, buf.palette, buf.found, buf.lut,
                            buf.reordered, p.min_pixels, offset, C=c, num_warps=IMAGE_WARPS)
        if pass_ == MAX_ASSIGN_PASSES - 1:
            break  # this pass dropped nothing (see MAX_ASSIGN_PASSES); N_max is known
        any_small, width_out = host_read(torch.stack([
            buf.small.max(), buf.num_full[1].max() - offset]))
        if not any_small:
            break
        buf.full.reverse()
        buf.num_full.reverse()
    return width_out


def _relabel(labels, buf) -> None:
    n, height, width = labels.shape
    block = LANES * SPAN
    for imgs in _image_slices(n):
        grid = (triton.cdiv(height * width, block), labels[imgs].shape[0])
        relabel_kernel[grid](labels[imgs], height, width, height * width, buf.lut[imgs],
                             buf.lut.stride(0), buf.reordered[imgs], LANES=LANES, SPAN=SPAN)
