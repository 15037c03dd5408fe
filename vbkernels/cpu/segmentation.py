"""Segmentation kernel ops of the ``cpu`` backend (signatures in ``vbkernels._dispatch``).

uint8 images can be labelled through a 2^24-entry table of the nearest palette index of
every colour, one lookup per pixel instead of K distances. Building the table costs about
as much as labelling 2^24 pixels directly, so we rent before we buy: a palette gets its
table once the pixels already labelled with it directly reach 2^24 (at most twice the cost
of the better choice in hindsight, and a video reaches it within ten 1080p frames). Only
palettes big enough for the lookup to beat the direct search use it (measured, see
TABLE_MIN_COLOURS); the most recent table is kept, 32 MB.
"""

from __future__ import annotations

import threading

import torch

from ._lib import call, code, library, ptr, shape3, strides

TABLE_COLOURS = 1 << 24
# Pixels a palette labels directly before it gets a table: about the table's build cost.
RENT_PIXELS = TABLE_COLOURS
# Below this many colours a lookup barely beats the direct search (1080p JPEG-degraded
# frames, 2-core EPYC: K=19 direct 147 Mpx/s, table 155; K=150 direct 35, table 150).
TABLE_MIN_COLOURS = 32
# Palettes whose direct pixel counts we remember while they rent.
_MAX_RENTING = 16


class LabelTables:
    """Per-process cache of uint8 label tables, keyed by the palette's bytes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rented: dict[bytes, int] = {}
        self._key: bytes | None = None
        self._table: torch.Tensor | None = None

    def table_for(self, palette: torch.Tensor, pixels: int) -> torch.Tensor | None:
        """The table for ``palette`` if it has one or has now earned one, else None."""
        if palette.shape[0] < TABLE_MIN_COLOURS:
            return None
        key = palette.numpy().tobytes()
        with self._lock:
            if key == self._key:
                return self._table
            seen = self._rented.pop(key, 0)
            if seen < RENT_PIXELS:
                if len(self._rented) >= _MAX_RENTING:
                    self._rented.pop(next(iter(self._rented)))
                self._rented[key] = seen + pixels
                return None
            table = build_label_table(palette)
            self._key, self._table = key, table
            return table

    def clear(self) -> None:
        with self._lock:
            self._rented.clear()
            self._key = self._table = None


def build_label_table(palette: torch.Tensor) -> torch.Tensor:
    """Nearest label of every uint8 colour ((r << 16) | (g << 8) | b), as int16 bits of u16."""
    if palette.dtype != torch.float32 or not palette.is_contiguous():
        raise ValueError("palette must be a contiguous float32 (K, 3) tensor")
    table = torch.empty(TABLE_COLOURS, dtype=torch.int16)
    library().vbk_build_label_table(ptr(palette), palette.shape[0], ptr(table))
    return table


LABEL_TABLES = LabelTables()


def decode_segmentation(rgb, palette, labels, distance, max_dist2, ignore_index: int) -> None:
    if labels.numel() == 0:
        return
    table = None
    if rgb.dtype == torch.uint8:
        table = LABEL_TABLES.table_for(palette, labels.numel())
    call("vbk_decode_segmentation", {"rgb": rgb, "palette": palette, "labels": labels},
         ptr(rgb), code(rgb), strides(rgb), shape3(rgb), ptr(palette), palette.shape[0],
         ptr(table), ptr(labels), code(labels), strides(labels), ptr(distance),
         strides(distance), int(max_dist2 is not None),
         0.0 if max_dist2 is None else float(max_dist2), int(ignore_index))


def encode_segmentation(labels, palette, rgb, ignore_color) -> None:
    if labels.numel() == 0:
        return
    palette, ignore_color = palette.contiguous(), ignore_color.contiguous()
    call("vbk_encode_segmentation", {"labels": labels, "rgb": rgb},
         ptr(labels), code(labels), strides(labels), shape3(labels), ptr(palette),
         palette.shape[0], ptr(ignore_color), ptr(rgb), strides(rgb))
