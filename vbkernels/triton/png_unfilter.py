"""PNG unfiltering on the device: the GPU half of a PNG decode whose CPU half (chunk walk,
CRC, inflate) is :func:`vbkernels.pipeline.png.inflate_png`.

Each byte of a filtered PNG row is reconstructed from the byte one pixel to its left (a),
the byte above (b) and the byte above-left (c) — Sub, Average and Paeth need a, Up, Average
and Paeth need b — so a row is sequential along x and the rows are sequential top to
bottom. What *is* independent is the anti-diagonal: pixel (y, x) needs only (y, x-1),
(y-1, x) and (y-1, x-1). So one program per image runs a wavefront over a block of rows:
at step s, row r of the block does pixel x = s - r, all rows and channels at once. The row
above's byte at x was stored by the previous step and is read back after a barrier; a and
c stay in registers. A block of R rows takes W + R - 1 steps, an image ceil(H / R) blocks.
Every lane evaluates all five predictors and keeps the one of its row's filter, so any
mix of filters runs the same code, exactly (integer arithmetic, mod 256).

Not measured on a GPU yet (none was available when it was written); tested bit-exact
against the NumPy :func:`~vbkernels.pipeline.png.unfilter` under ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _common as cm


@triton.jit
def _unfilter_kernel(p_in, p_out, H, W, s_in_n, s_in_h, s_out_n, s_out_h,
                     C: tl.constexpr, CP: tl.constexpr, ROWS: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    lane = tl.arange(0, ROWS * CP)
    r = lane // CP  # row within the block
    ch = lane % CP  # channel, padded to a power of two CP >= C
    p_in_img = p_in + n * s_in_n
    p_out_img = p_out + n * s_out_n
    for y0 in range(0, H, ROWS):
        y = y0 + r
        live = (ch < C) & (y < H)
        kind = tl.load(p_in_img + y.to(tl.int64) * s_in_h, mask=live, other=0).to(tl.int32)
        in_row = p_in_img + y.to(tl.int64) * s_in_h + 1 + ch
        out_row = p_out_img + y.to(tl.int64) * s_out_h + ch
        above_row = out_row - s_out_h
        has_above = live & (y > 0)
        a = tl.zeros([ROWS * CP], dtype=tl.int32)
        c = tl.zeros([ROWS * CP], dtype=tl.int32)
        for s in range(W + ROWS - 1):
            x = s - r
            active = live & (x >= 0) & (x < W)
            offset = x.to(tl.int64) * C
            f = tl.load(in_row + offset, mask=active, other=0).to(tl.int32)
            # Stored by row r - 1 at step s - 1 (or by the previous block): volatile, so the
            # load is issued after the barrier below rather than cached or hoisted.
            b = tl.load(above_row + offset, mask=active & has_above, other=0,
                        volatile=True).to(tl.int32)
            pa = tl.abs(b - c)
            pb = tl.abs(a - c)
            pc = tl.abs(a + b - 2 * c)
            paeth = tl.where((pa <= pb) & (pa <= pc), a, tl.where(pb <= pc, b, c))
            pred = tl.where(kind == 1, a, tl.where(kind == 2, b, tl.where(
                kind == 3, (a + b) >> 1, tl.where(kind == 4, paeth, 0))))
            value = (f + pred) & 0xFF
            tl.store(out_row + offset, value.to(tl.uint8), mask=active)
            a = tl.where(active, value, a)
            c = tl.where(active, b, c)
            tl.debug_barrier()


def unfilter(filtered: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, H, 1 + W*channels) uint8 filtered rows (each a filter byte, then the row) ->
    (N, H, W, channels) uint8 pixels, on the tensors' device. Filter bytes outside 0..4
    raise ``ValueError`` (this reads them back to the host: one sync per call)."""
    if not isinstance(filtered, torch.Tensor) or filtered.dtype != torch.uint8 \
            or filtered.dim() != 3:
        raise ValueError("filtered must be an (N, H, 1 + W*channels) uint8 tensor, got "
                         f"{getattr(filtered, 'dtype', type(filtered).__name__)} "
                         f"{tuple(getattr(filtered, 'shape', ()))}")
    if channels not in (1, 2, 3, 4) or (filtered.shape[2] - 1) % channels:
        raise ValueError(f"channels must be 1..4 and divide the row length "
                         f"{filtered.shape[2] - 1}, got {channels!r}")
    if filtered.device.type != "cuda" and not cm.interpreting():
        raise ValueError(f"filtered must be on a CUDA device (or run with TRITON_INTERPRET=1), "
                         f"got {filtered.device}")
    n, h, row = filtered.shape
    w = (row - 1) // channels
    out = torch.empty((n, h, w, channels), dtype=torch.uint8, device=filtered.device)
    if out.numel() == 0:
        return out
    if int(filtered[:, :, 0].max()) > 4:
        raise ValueError(f"PNG row filter {int(filtered[:, :, 0].max())} is not one of 0..4")
    filtered = filtered.contiguous()
    cp = triton.next_power_of_2(channels)
    rows = 8 if cm.interpreting() else 256
    _unfilter_kernel[(n,)](filtered, out, h, w, filtered.stride(0), filtered.stride(1),
                           out.stride(0), out.stride(1), C=channels, CP=cp, ROWS=rows,
                           num_warps=1 if cm.interpreting() else 8)
    return out


def to_rgb(pixels: torch.Tensor) -> torch.Tensor:
    """(N, H, W, channels) uint8 -> (N, H, W, 3), as Pillow's ``convert("RGB")`` does:
    grey replicated, alpha dropped."""
    if pixels.shape[-1] in (1, 2):
        return pixels[..., :1].expand(*pixels.shape[:-1], 3).contiguous()
    return pixels[..., :3].contiguous()
