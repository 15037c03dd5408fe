"""Colormap kernel op of the ``cpu`` backend (contract in ``vbkernels/reference/colormap.py``).

Float images search every polyline segment for every pixel. uint8 images go through a
per-process cache of 2^24-entry colour -> (t, distance) tables, one per colormap (keyed by
the polyline's bytes), filled lazily: a call computes only the colours of its image that no
earlier call has seen (with the same search, so the bits are the same either way) and then
gathers every pixel. A painted frame has at most a few hundred distinct colours and a JPEG
one tens of thousands, and video frames reuse the table, so after the first frame a decode
costs a lookup per pixel. A table is 128 MB of address space, of which only the pages
holding seen colours are ever touched; the two most recent are kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch

from ._lib import call, code, ptr, shape3, strides

TABLE_COLOURS = 1 << 24
TABLES_KEPT = 2
# uint8 images smaller than this with no table yet are searched directly: creating a table
# (two 2 MB bitmaps, fresh pages to fault in) costs more than searching them. Measured on
# the 2-core CI-sized machine, turbo, painted colours: 32x32 direct 2.1 ms, cold table 3.4;
# 64x64 direct 8.1, cold table 1.9. (Random colours: a cold table costs ~2x the direct
# search, a page fault per new colour, repaid by the next frame.)
TABLE_MIN_PIXELS = 1 << 12


@dataclass
class ColourTable:
    """(t, distance) float32 pairs by colour key ``r | (g << 8) | (b << 16)``, valid where
    the bit of ``filled`` is set (``claimed``: the kernel's bookkeeping while it fills);
    ``computed`` counts the colours filled so far."""

    table: torch.Tensor
    filled: torch.Tensor
    claimed: torch.Tensor
    computed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def empty(cls) -> ColourTable:
        # The table comes from torch (malloc: fresh pages, each touched, and so backed by
        # memory, only once a colour in it is filled; NumPy would ask for 2 MB huge pages,
        # all 128 MB of them zeroed by the first frame). The bitmaps come from NumPy's
        # calloc, zeroed on this thread rather than by torch's parallel fill.
        def bitmap() -> torch.Tensor:
            return torch.from_numpy(np.zeros(TABLE_COLOURS // 64, dtype=np.int64))

        return cls(torch.empty(2 * TABLE_COLOURS, dtype=torch.float32), bitmap(), bitmap())


class ColourTables:
    """The per-process cache: the ``TABLES_KEPT`` most recently used tables."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables: OrderedDict[bytes, ColourTable] = OrderedDict()

    @staticmethod
    def key(colours: torch.Tensor, positions: torch.Tensor) -> bytes:
        return colours.numpy().tobytes() + positions.numpy().tobytes()

    def get(self, key: bytes, create: bool) -> ColourTable | None:
        """The table for ``key``; a new empty one if absent and ``create``, else None."""
        with self._lock:
            entry = self._tables.get(key)
            if entry is not None:
                self._tables.move_to_end(key)
            elif create:
                entry = self._tables[key] = ColourTable.empty()
                while len(self._tables) > TABLES_KEPT:
                    self._tables.popitem(last=False)
            return entry

    def clear(self) -> None:
        with self._lock:
            self._tables.clear()


COLOUR_TABLES = ColourTables()


def decode_colormap(rgb, colours, positions, t, distance, max_distance) -> None:
    expected = torch.float64 if rgb.dtype == torch.float64 else torch.float32
    if t.dtype != expected or (distance is not None and distance.dtype != torch.float32):
        raise TypeError(f"the cpu backend's decode_colormap writes t as {expected} and distance "
                        f"as float32 for {rgb.dtype} images, got t {t.dtype}"
                        + ("" if distance is None else f", distance {distance.dtype}"))
    if t.numel() == 0:
        return
    colours, positions = colours.contiguous(), positions.contiguous()
    threshold = (int(max_distance is not None),
                 0.0 if max_distance is None else float(max_distance))
    if rgb.dtype == torch.uint8:
        key = COLOUR_TABLES.key(colours, positions)
        entry = COLOUR_TABLES.get(key, create=t.numel() >= TABLE_MIN_PIXELS)
        if entry is not None:
            _table_decode(entry, rgb, colours, positions, t, distance, threshold)
            return
    call("vbk_decode_colormap", {"rgb": rgb, "t": t},
         ptr(rgb), code(rgb), strides(rgb), shape3(rgb), ptr(colours), ptr(positions),
         colours.shape[0], ptr(t), strides(t), ptr(distance), strides(distance), *threshold)


def _table_decode(entry: ColourTable, rgb, colours, positions, t, distance, threshold) -> None:
    import ctypes

    computed = ctypes.c_int64(0)
    # A call leaves claimed colours unfilled while it computes them: one call at a time.
    with entry.lock:
        call("vbk_colormap_table_decode", {"rgb": rgb, "t": t},
             ptr(rgb), strides(rgb), shape3(rgb), ptr(colours), ptr(positions),
             colours.shape[0], ptr(entry.table), ptr(entry.filled), ptr(entry.claimed),
             ptr(t), strides(t),
             ptr(distance), strides(distance), *threshold, ctypes.byref(computed))
        entry.computed += computed.value
