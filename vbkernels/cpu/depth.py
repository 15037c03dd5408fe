"""Depth kernel ops of the ``cpu`` backend (signatures in ``vbkernels._dispatch``).

uint8 depth is a gather from a 7 x 256 table of the depth at (walk segment, varying
channel value). The table is the torch reference's own output for one on-walk pixel per entry,
so the cpu backend's uint8 depth equals the reference's bit for bit (the C library's
log1pf/expm1f are a few ulps off torch's on 11 % of all colours); it is cached per
(lam, c, max_depth) like the label tables. The cuda backend's uint8 fast path gathers from
the same tables (``walk_table``), copied to its device.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch

from .._walk import VERTICES
from ._lib import call, code, ptr, shape3, strides

_MAX_TABLES = 8
_HOST = torch.device("cpu")
_tables: OrderedDict = OrderedDict()
_tables_lock = threading.Lock()


def walk_pixels() -> torch.Tensor:
    """(1, 7, 256, 3) uint8: pixel (k, v) lies on walk segment k with its varying channel at v.

    Every (k, v) a uint8 pixel can project to is projected to by this pixel: only a
    segment's start vertex ties with (and goes to) the segment before, and no pixel reaches
    segment k >= 1 with its varying channel at the start value.
    """
    pixels = torch.empty((7, 256, 3), dtype=torch.uint8)
    values = torch.arange(256, dtype=torch.uint8)
    for k in range(7):
        start, end = VERTICES[k], VERTICES[k + 1]
        for ch in range(3):
            pixels[k, :, ch] = values if start[ch] != end[ch] else 255 * start[ch]
    return pixels.unsqueeze(0)


def depth_table(lam: float, c: float, max_depth) -> torch.Tensor:
    """Float32 depth at k * 256 + v, from the torch reference (cached)."""
    return walk_table("depth", lam, c, max_depth)


def walk_table(quantity: str, lam: float = 0.0, c: float = 0.0, max_depth=None,
               device: torch.device = _HOST) -> torch.Tensor:
    """Float32 ``quantity`` ("t" or "depth") at k * 256 + v on ``device``, computed by the
    torch reference on the host (cached)."""
    key = (quantity, float(lam), float(c), None if max_depth is None else float(max_depth),
           str(device))
    with _tables_lock:
        if key in _tables:
            _tables.move_to_end(key)
            return _tables[key]
    from ..reference import depth as reference

    rgb = walk_pixels()
    table = torch.empty(rgb.shape[:3], dtype=torch.float32)
    if quantity == "t":
        reference.hilbert_project(rgb, table)
    else:
        reference.decode_depth(rgb, table, None, lam, c, max_depth)
    table = table.reshape(-1).to(device)
    with _tables_lock:
        _tables[key] = table
        while len(_tables) > _MAX_TABLES:
            _tables.popitem(last=False)
    return table


def hilbert_project(rgb: torch.Tensor, t: torch.Tensor) -> None:
    if t.numel() == 0:
        return
    call("vbk_hilbert_project", {"rgb": rgb, "t": t},
         ptr(rgb), code(rgb), strides(rgb), shape3(rgb), ptr(t), code(t), strides(t))


def decode_depth(rgb, depth, distance, lam: float, c: float, max_depth) -> None:
    if depth.numel() == 0:
        return
    table = depth_table(lam, c, max_depth) if rgb.dtype == torch.uint8 else None
    call("vbk_decode_depth", {"rgb": rgb, "depth": depth},
         ptr(rgb), code(rgb), strides(rgb), shape3(rgb), ptr(depth), code(depth),
         strides(depth), ptr(distance), strides(distance), -lam * c, lam + 1.0,
         int(max_depth is not None), 0.0 if max_depth is None else float(max_depth), ptr(table))


def hilbert_walk(t: torch.Tensor, rgb: torch.Tensor) -> None:
    if t.numel() == 0:
        return
    call("vbk_hilbert_walk", {"t": t, "rgb": rgb},
         ptr(t), code(t), strides(t), shape3(t), ptr(rgb), code(rgb), strides(rgb))


def encode_depth(depth: torch.Tensor, rgb: torch.Tensor, lam: float, c: float) -> None:
    if depth.numel() == 0:
        return
    call("vbk_encode_depth", {"depth": depth, "rgb": rgb},
         ptr(depth), code(depth), strides(depth), shape3(depth), ptr(rgb), code(rgb),
         strides(rgb), -lam * c, lam + 1.0)
