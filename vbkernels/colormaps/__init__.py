"""Built-in depth colormaps and colormap tables (docs/format.md, Colormaps).

A colormap is an N-entry table of colours. matplotlib paints a value normalised to
``x`` in [0, 1] with entry ``floor(x * N)`` (``x == 1`` with entry N-1), and writes 8-bit
images with the bytes ``floor(255 * colour)``. The built-in tables below ship in
``tables.npz`` (matplotlib's float tables, written by ``_generate.py``), so painting and
decoding them needs no matplotlib.

Sources and licences of the built-in tables (each also as ``<name>_r``, reversed):

============  ===========================================================================
name          source and licence
============  ===========================================================================
viridis,      Nathaniel J. Smith, Stefan van der Walt and (viridis) Eric Firing, 2015,
plasma,       made for matplotlib 2.0; released under CC0 (public domain).
inferno,
magma
cividis       Jamie R. Nuñez, Christopher R. Anderton, Ryan S. Renslow, "Optimizing
              colormaps with consideration for color vision deficiency", PLoS ONE 13(7),
              2018 (CC BY 4.0); the table as matplotlib ships it (matplotlib licence).
turbo         Anton Mikhailov, Google LLC, 2019; Apache License 2.0.
gray, jet,    matplotlib's segmented maps (``matplotlib._cm``); matplotlib licence
rainbow       (PSF-based, BSD-compatible).
Greys,        ColorBrewer, Cynthia A. Brewer, Pennsylvania State University; Apache-style
Spectral      licence (matplotlib's LICENSE_COLORBREWER).
============  ===========================================================================
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

__all__ = ["BUILTIN_COLORMAPS", "ColormapTable", "colormap_table", "polyline"]

_HERE = Path(__file__).resolve().parent
BASE_NAMES = ("viridis", "plasma", "inferno", "magma", "cividis", "turbo", "gray", "Greys",
              "jet", "rainbow", "Spectral")
BUILTIN_COLORMAPS = tuple(n for base in BASE_NAMES for n in (base, base + "_r"))
MAX_ENTRIES = 1 << 16


class ColormapTable(NamedTuple):
    """A colormap as both painters use it.

    ``lut``: (N, 3) float64 in [0, 1], the colours matplotlib returns as floats.
    ``painted``: (N, 3) uint8, the bytes matplotlib writes for each entry.
    """

    name: str
    lut: np.ndarray
    painted: np.ndarray

    @property
    def n(self) -> int:
        return self.lut.shape[0]


@functools.lru_cache(maxsize=1)
def _builtin_tables() -> dict[str, np.ndarray]:
    with np.load(_HERE / "tables.npz") as data:
        return {name: data[name] for name in BUILTIN_COLORMAPS}


def _from_lut(name: str, lut: np.ndarray) -> ColormapTable:
    # matplotlib's bytes: ``(lut * 255).astype(np.uint8)``, a truncation.
    return ColormapTable(name, lut, (lut * 255.0).astype(np.uint8))


def colormap_table(colormap: Any) -> ColormapTable:
    """Resolve what a caller passed as ``colormap``.

    Args:
        colormap: a built-in name (``BUILTIN_COLORMAPS``); an (N, 3) array or tensor of
            colours, uint8 (0..255) or float in [0, 1], read as matplotlib reads
            ``ListedColormap(colours)``; or a matplotlib ``Colormap``.

    Returns:
        the :class:`ColormapTable`.

    Example::

        >>> colormap_table("viridis").painted[0].tolist()
        [68, 1, 84]
    """
    if isinstance(colormap, str):
        tables = _builtin_tables()
        if colormap not in tables:
            raise ValueError(f"colormap must be one of {BUILTIN_COLORMAPS}, an (N, 3) array of "
                             f"colours or a matplotlib Colormap, got {colormap!r}")
        return _from_lut(colormap, tables[colormap])
    if callable(colormap) and hasattr(colormap, "N"):  # a matplotlib Colormap
        n = int(colormap.N)
        lut = np.asarray(colormap(np.arange(n)), dtype=np.float64)[:, :3]
        return _from_lut(getattr(colormap, "name", "colormap"), lut)
    return _from_array(colormap)


def _from_array(colours: Any) -> ColormapTable:
    if isinstance(colours, torch.Tensor):
        colours = colours.detach().cpu().numpy()
    try:
        array = np.asarray(colours)
    except Exception as exc:  # noqa: BLE001 - anything unreadable gets the same message
        raise TypeError(f"colormap must be a name, an (N, 3) array or a matplotlib "
                        f"Colormap, got {type(colours).__name__}") from exc
    if array.ndim != 2 or array.shape[1] != 3 or not 1 <= array.shape[0] <= MAX_ENTRIES:
        raise ValueError(f"colormap must be an (N, 3) array of colours with 1 <= N <= "
                         f"{MAX_ENTRIES}, got shape {array.shape}")
    if array.dtype == np.uint8:
        return ColormapTable("colors", array.astype(np.float64) / 255.0, array.copy())
    if array.dtype.kind not in "fiu":
        raise TypeError(f"colormap colours must be uint8 or float in [0, 1], got {array.dtype}")
    lut = array.astype(np.float64)
    if not (np.isfinite(lut).all() and (lut >= 0).all() and (lut <= 1).all()):
        raise ValueError("colormap: float colours must be finite and in [0, 1] (uint8 colours "
                         "are 0..255)")
    return _from_lut("colors", lut)


def polyline(table: ColormapTable) -> tuple[np.ndarray, np.ndarray]:
    """The decoder's polyline: vertices (M, 3) float64 in 0..255 units and the normalised
    value ``positions`` (M,) float64 each vertex decodes to, strictly increasing.

    Entry i paints the values in ``[i/N, (i+1)/N)``, so its best estimate is the bin's
    centre ``(i + 0.5)/N``. A run of equal neighbouring entries (matplotlib's truncation to
    bytes makes some) is one vertex at the centre of the run's bins. A single-colour map
    gives its one vertex twice (a zero-length segment), so kernels always see M >= 2.

    Example::

        >>> v, pos = polyline(colormap_table(np.array([[0, 0, 0], [0, 0, 0], [255, 0, 0]],
        ...                                            dtype=np.uint8)))
        >>> v.tolist(), pos.tolist()
        ([[0.0, 0.0, 0.0], [255.0, 0.0, 0.0]], [0.3333333333333333, 0.8333333333333334])
    """
    painted = table.painted.astype(np.int64)
    n = painted.shape[0]
    starts = np.flatnonzero(np.r_[True, np.any(painted[1:] != painted[:-1], axis=1)])
    ends = np.r_[starts[1:], n]  # one past each run's last entry
    vertices = painted[starts].astype(np.float64)
    positions = (starts + ends) / (2.0 * n)
    if len(starts) == 1:
        vertices = np.repeat(vertices, 2, axis=0)
        positions = np.repeat(positions, 2)
    return vertices, positions
