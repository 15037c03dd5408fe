"""Jit helpers and launch plumbing shared by the Triton kernels.

Every kernel walks an (N, H, W[, 3]) view with arbitrary strides on a 2-D grid: axis 0 is
the image row ``n * H + h`` (up to 2^31 - 1 rows), axis 1 a block of ``BLOCK_W`` pixels of
that row. Row and column indices are cast to int64 *before* they meet a stride, so views
with more than 2^31 elements (a 128 x 3840 x 2160 x 3 batch) address correctly.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl


def interpreting() -> bool:
    """True when Triton runs kernels through its NumPy interpreter (CPU tensors)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


# Under the interpreter every config would be benchmarked in Python, so it gets one. Its
# cost is per program, not per pixel; tests split rows over blocks with widths > 128.
INTERPRETER_BLOCK_W = 128


def row_configs(shapes=((256, 4), (512, 4), (1024, 4), (1024, 8))) -> list[triton.Config]:
    """(BLOCK_W, num_warps) candidates, narrowest first. Few on purpose: every config is a
    separate compile per kernel variant, and these kernels are memory bound."""
    if interpreting():
        return [triton.Config({"BLOCK_W": INTERPRETER_BLOCK_W}, num_warps=1)]
    return [triton.Config({"BLOCK_W": bw}, num_warps=nw) for bw, nw in shapes]


def prune_wide_blocks(configs, named_args, **kwargs):
    """Keep blocks no wider than the row (half its power-of-two bucket), else the narrowest:
    a narrow image gets one config, so it is compiled once and never benchmarked."""
    kept = [cfg for cfg in configs if 2 * cfg.kwargs["BLOCK_W"] <= named_args["W_BUCKET"]]
    return kept or configs[:1]


# Autotune keys: a coarse width bucket and whether channels are adjacent in memory, plus
# the dtypes Triton's autotuner adds itself, so a video of any frame size tunes once per
# (bucket, layout, dtype), never per resolution.
TUNE_KEY = ["W_BUCKET", "CH_CONTIG"]


def width_bucket(width: int) -> int:
    return min(triton.next_power_of_2(max(int(width), 1)), 4096)


def channel_contiguous(view: torch.Tensor) -> int:
    return int(view.dim() == 4 and view.stride(-1) == 1)


def row_grid(n: int, h: int, w: int):
    return lambda meta: (n * h, triton.cdiv(w, meta["BLOCK_W"]))


def strides3(view: torch.Tensor) -> tuple[int, int, int]:
    """(n, h, w) strides of an (N, H, W) or (N, H, W, 3) view."""
    return view.stride(0), view.stride(1), view.stride(2)


def capturing(device: torch.device) -> bool:
    """True inside CUDA graph capture: kernels are recorded, not run, so a table built now
    holds its values only once the graph replays and must not be cached for eager calls."""
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def split_f64(value: float) -> tuple[float, float]:
    """``value`` as float32 hi + lo: Triton passes Python floats as float32, and the float64
    kernels rebuild ``hi + lo`` (48 bits) so their constants match the reference's."""
    hi = float(torch.tensor(value, dtype=torch.float32))
    lo = float(torch.tensor(value - hi, dtype=torch.float32))
    return hi, lo


class DeviceTables:
    """The ``kept`` most recently used device tables, each keyed by the tensors it was built
    from (a palette, a polyline). A lookup compares contents on the device, a sync, so
    callers do not look up during CUDA graph capture."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self.entries: list = []  # (key tensors, table), most recent first

    def get(self, keys: tuple[torch.Tensor, ...], build):
        """The table built from ``keys``: a cached one, else ``build()`` (then cached)."""
        for i, (cached, table) in enumerate(self.entries):
            if all(c.device == k.device and c.shape == k.shape and torch.equal(c, k)
                   for c, k in zip(cached, keys)):
                self.entries.insert(0, self.entries.pop(i))
                return table
        table = build()
        self.entries.insert(0, (tuple(k.clone() for k in keys), table))
        del self.entries[self.kept:]
        return table


def empty(view: torch.Tensor) -> bool:
    return view.shape[0] * view.shape[1] * view.shape[2] == 0


@triton.jit
def pixel_offsets(H, W, s_n, s_h, s_w, BLOCK_W: tl.constexpr):
    """int64 element offsets of this program's pixels in one view, and the tail mask."""
    row = tl.program_id(0)
    n = row // H
    h = row - n * H
    w = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    mask = w < W
    offsets = n.to(tl.int64) * s_n + h.to(tl.int64) * s_h + w.to(tl.int64) * s_w
    return offsets, mask


@triton.jit
def load_channel(p_rgb, offsets, mask, IS_U8: tl.constexpr, IS_F64: tl.constexpr):
    """One channel of a pixel block: uint8 as int32 0..255 (exact integer arithmetic
    downstream), float clamped to [0, 1] in float32 (float64 for float64 input), plus its
    NaN flag, taken before the clamp because min/max drop NaN on some targets."""
    x = tl.load(p_rgb + offsets, mask=mask, other=0)
    # One return per function: Triton type-checks every return, even in a dead branch.
    if IS_U8:
        value = x.to(tl.int32)
        nan = value < 0  # uint8 has no NaN: an all-False flag of the block's shape
    else:
        if IS_F64:
            v = x.to(tl.float64)
        else:
            v = x.to(tl.float32)
        nan = v != v
        value = tl.minimum(tl.maximum(v, 0.0), 1.0)
    return value, nan


@triton.jit
def to_units(x, IS_U8: tl.constexpr):
    """docs/format.md, Units and dtypes: "0..255 units" of a value from ``load_channel``."""
    if IS_U8:
        units = x
    else:
        units = x * 255.0
    return units


@triton.jit
def load_units(p_rgb, offsets, s_c, mask, IS_U8: tl.constexpr, IS_F64: tl.constexpr):
    """A pixel block's three channels in 0..255 units, and its NaN flag."""
    x_r, nan_r = load_channel(p_rgb, offsets, mask, IS_U8, IS_F64)
    x_g, nan_g = load_channel(p_rgb, offsets + s_c, mask, IS_U8, IS_F64)
    x_b, nan_b = load_channel(p_rgb, offsets + 2 * s_c, mask, IS_U8, IS_F64)
    nan = nan_r | nan_g | nan_b
    return to_units(x_r, IS_U8), to_units(x_g, IS_U8), to_units(x_b, IS_U8), nan


@triton.jit
def to_float(x, IS_F64: tl.constexpr):
    if IS_F64:
        y = x.to(tl.float64)
    else:
        y = x.to(tl.float32)
    return y


@triton.jit
def log1p_small(x):
    """log(1 + x) for |x| <= 0.5 to a few ulps, with no cancellation near x = 0.

    2*atanh(z) with z = x / (2 + x), |z| <= 1/3; the series is cut where the next term is
    below float32 resolution. Written out so the interpreter and every Triton version agree
    (libdevice's log1p is not reachable everywhere).
    """
    z = x / (2.0 + x)
    z2 = z * z
    p = 0.05263157894736842  # 1/19
    p = p * z2 + 0.058823529411764705  # 1/17
    p = p * z2 + 0.06666666666666667  # 1/15
    p = p * z2 + 0.07692307692307693  # 1/13
    p = p * z2 + 0.09090909090909091  # 1/11
    p = p * z2 + 0.1111111111111111  # 1/9
    p = p * z2 + 0.14285714285714285  # 1/7
    p = p * z2 + 0.2
    p = p * z2 + 0.3333333333333333
    p = p * z2 + 1.0
    return 2.0 * z * p


@triton.jit
def log1p(x):
    """log(1 + x) for x >= -0.5 (accurate near 0, plain log elsewhere)."""
    small = tl.abs(x) <= 0.5
    big = tl.log(tl.where(small, 1.0, 1.0 + x))
    return tl.where(small, log1p_small(tl.where(small, x, 0.0)), big)


@triton.jit
def expm1(x):
    """exp(x) - 1 without cancellation for |x| < 0.5 (Taylor to x^12); +inf stays +inf."""
    small = tl.abs(x) < 0.5
    xs = tl.where(small, x, 0.0)
    p = 2.08767569878681e-09  # 1/12!
    p = p * xs + 2.505210838544172e-08  # 1/11!
    p = p * xs + 2.755731922398589e-07
    p = p * xs + 2.7557319223985893e-06
    p = p * xs + 2.48015873015873e-05
    p = p * xs + 0.0001984126984126984
    p = p * xs + 0.001388888888888889
    p = p * xs + 0.008333333333333333
    p = p * xs + 0.041666666666666664
    p = p * xs + 0.16666666666666666
    p = p * xs + 0.5
    p = p * xs + 1.0
    return tl.where(small, xs * p, tl.exp(tl.where(small, 0.0, x)) - 1.0)


@triton.jit
def cast_for(value, p_out):
    """``value`` in ``p_out``'s element type. bfloat16 goes through float32: the Triton
    interpreter mangles a direct float64 -> bfloat16 cast."""
    ty = p_out.dtype.element_ty
    if ty == tl.bfloat16:
        out = value.to(tl.float32).to(ty)
    else:
        out = value.to(ty)
    return out


@triton.jit
def round_half_even_f64(x):
    """Round a float64 in [0, 2^52) to the nearest integer, ties to even (torch.round)."""
    return (x + 4503599627370496.0) - 4503599627370496.0


# --- the word ("quad") path for contiguous uint8 RGB ------------------------------------
#
# A flat-contiguous (N, H, W, 3) uint8 batch is one stream of 3-byte pixels. Four pixels are
# 12 bytes: three 32-bit words when the data starts on a 4-byte boundary. The quad kernels
# give each lane whole groups of four pixels (three word loads, split with shifts) and store
# their outputs as 16-byte vectors; the last program of a launch, whose block runs past the
# end of the batch, takes a per-pixel masked path instead, so no word is read past the end.

# Groups of 4 pixels per program: 1024 pixels per program on a GPU (4 warps, two groups per
# lane); under the interpreter, whose cost is per program, 128 pixels.
QUAD_BLOCK = 256
QUAD_WARPS = 4
INTERPRETER_QUAD_BLOCK = 32


def quad_block() -> int:
    return INTERPRETER_QUAD_BLOCK if interpreting() else QUAD_BLOCK


def quad_launch(pixels: int) -> tuple[tuple[int], dict]:
    """Grid and launch options of a quad kernel over ``pixels`` pixels."""
    block = quad_block()
    opts = {"BLOCK": block, "num_warps": 1 if interpreting() else QUAD_WARPS}
    return (triton.cdiv(pixels, 4 * block),), opts


def flat_contiguous(view: torch.Tensor | None) -> bool:
    """Element i of the view sits at data_ptr + i * itemsize (size-1 dims are free)."""
    return view is None or view.is_contiguous()


def takes_quad_path(rgb: torch.Tensor, *outputs: torch.Tensor | None) -> bool:
    """Whether a decoder reads ``rgb`` with word loads (the quad kernels): uint8, flat
    contiguous and 4-byte aligned, with every output flat contiguous too. Anything else
    (strided, channels-first, offset by 1-3 bytes, float) takes the per-row kernels."""
    if rgb.dtype != torch.uint8 or rgb.data_ptr() % 4 != 0:
        return False
    return flat_contiguous(rgb) and all(flat_contiguous(o) for o in outputs)


@triton.jit
def _byte(word, i: tl.constexpr):
    return (word >> (8 * i)) & 255


@triton.jit
def load_quads(p_rgb, g):
    """Channels (int32 0..255) of pixels 4g .. 4g+3 of a flat uint8 RGB stream whose start
    is 4-byte aligned: words 3g, 3g+1, 3g+2 hold r0 g0 b0 r1 | g1 b1 r2 g2 | b2 r3 g3 b3
    (little endian). Returns ``(r0, g0, b0, r1, ..., b3)``."""
    words = p_rgb.to(tl.pointer_type(tl.int32))
    w0 = tl.load(words + 3 * g)
    w1 = tl.load(words + 3 * g + 1)
    w2 = tl.load(words + 3 * g + 2)
    return (_byte(w0, 0), _byte(w0, 1), _byte(w0, 2), _byte(w0, 3),
            _byte(w1, 0), _byte(w1, 1), _byte(w1, 2), _byte(w1, 3),
            _byte(w2, 0), _byte(w2, 1), _byte(w2, 2), _byte(w2, 3))


@triton.jit
def interleave4(a, b, c, d, BLOCK: tl.constexpr):
    """[a0 b0 c0 d0 a1 b1 c1 d1 ...]: each lane's four values become one vector store."""
    return tl.reshape(tl.join(tl.join(a, c), tl.join(b, d)), (4 * BLOCK,))


@triton.jit
def interleave4_rows(a, b, c, d, BLOCK: tl.constexpr):
    """As ``interleave4``, shaped (BLOCK, 4): row g holds a[g], b[g], c[g], d[g]."""
    return tl.reshape(tl.join(tl.join(a, c), tl.join(b, d)), (BLOCK, 4))


@triton.jit
def store_quads(p_out, pid, a, b, c, d, BLOCK: tl.constexpr):
    """One value per pixel for the program's 4*BLOCK pixels, as 16-byte (float32) vectors."""
    o = pid * (4 * BLOCK) + tl.arange(0, 4 * BLOCK)
    tl.store(p_out + o, interleave4(a, b, c, d, BLOCK).to(p_out.dtype.element_ty))


@triton.jit
def tail_pixels(pid, P, BLOCK: tl.constexpr):
    """Flat indices and mask of the last program's pixels (the per-pixel path)."""
    i = pid * (4 * BLOCK) + tl.arange(0, 4 * BLOCK)
    return i, i < P


@triton.jit
def load_pixel_bytes(p_rgb, i, mask):
    """Channels (int32 0..255) of flat pixels ``i`` by byte loads (the quad tail)."""
    r = tl.load(p_rgb + 3 * i, mask=mask, other=0).to(tl.int32)
    g = tl.load(p_rgb + 3 * i + 1, mask=mask, other=0).to(tl.int32)
    b = tl.load(p_rgb + 3 * i + 2, mask=mask, other=0).to(tl.int32)
    return r, g, b
