"""Reading images as (H, W, 3) uint8, with a faster exact route for common PNGs.

:func:`read_image` is a drop-in for ``np.asarray(Image.open(f).convert("RGB"))``: the same
pixels, the same accepted modes, a ``ValueError`` naming the file for anything it cannot
read. A PNG (:func:`read_png`) takes the fast route when it is 8-bit greyscale, grey+alpha,
RGB or RGBA, not interlaced, not animated, and every chunk's CRC checks out
(:func:`parse_png`): the image data is inflated (ISA-L from the ``fastpng`` extra, else
zlib) and unfiltered by the ``cpu`` backend's compiled library (``csrc/cpu/png.cpp``), or,
where that library was not built, libspng (``pyspng``, also in ``fastpng``) decodes it;
either way to RGB, dropping alpha and replicating grey as Pillow's ``convert("RGB")`` does.
Anything else, including every file the fast route rejects for any reason (a stream that
does not inflate, an unknown filter byte), goes to Pillow, so the result is always
Pillow's (or Pillow's error). On Pillow-written noisy 1080p depth frames (mostly Sub/Up
rows) the native route measured 2x Pillow and 1.4x libspng per core.

The CRC check is ours: libspng as pyspng calls it returns pixels from files with flipped
bytes in their image data without an error, where Pillow raises.

For a GPU, :func:`inflate_png` does only the CPU half of a PNG decode (chunk walk, CRC,
inflate with ISA-L or zlib) and leaves the per-row filters to the device
(``vbkernels.triton.png_unfilter``); :func:`unfilter` is the NumPy version of that half.
ISA-L inflate + :func:`unfilter` measured as fast as libspng on Pillow-written frames
(mostly Sub/Up rows) but costs 5-10 ms per Average/Paeth row, a Python loop, so it is
not a read route.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import torch

from vbkernels.files import PNG_SIGNATURE

try:
    import pyspng as _pyspng
except ImportError:
    _pyspng = None

__all__ = [
    "read_image", "read_png", "png_route", "PngHeader", "parse_png", "inflate_png",
    "unfilter", "inflaters", "PNG_SIGNATURE",
]

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]

# Pillow's modes that read_image accepts (the same set as the command line always took):
# 8 bits per channel; 16-bit and float images are refused rather than silently clipped.
_PILLOW_MODES = ("RGB", "RGBA", "L", "P", "LA", "CMYK", "YCbCr")
# PNG colour type -> channels, for the types the fast route takes at bit depth 8.
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
_CRITICAL_OK = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}


@dataclass(frozen=True)
class PngHeader:
    """What the fast route needs from a PNG: its IHDR and where its image data lies."""
    width: int
    height: int
    channels: int                 # 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA (8 bits each)
    idat: tuple[slice, ...]       # the IDAT chunks' data, in file order

    @property
    def row_bytes(self) -> int:
        """Bytes of one filtered row, without its filter byte."""
        return self.width * self.channels


def _crc32_function():
    """ISA-L's CRC-32 when installed (the same CRC as zlib's, ~8x faster: 0.3 ms on a 2.6 MB
    file, which makes checking every chunk nearly free), else zlib's."""
    try:
        from isal import isal_zlib
        return isal_zlib.crc32
    except ImportError:
        return zlib.crc32


_crc32 = _crc32_function()


def parse_png(data: bytes) -> PngHeader | None:
    """The header of a PNG the fast route can decode exactly, else ``None`` (let Pillow
    decide): 8-bit grey/grey+alpha/RGB/RGBA, not interlaced, no animation, no unknown
    critical chunk, one run of IDAT chunks, an IEND, and a correct CRC on every chunk."""
    view = memoryview(data)
    if len(view) < 8 + 25 or bytes(view[:8]) != PNG_SIGNATURE:
        return None
    header = None
    idat: list[slice] = []
    idat_done = False
    pos = 8
    while pos + 12 <= len(view):
        length, kind = struct.unpack_from(">I4s", view, pos)
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(view):
            return None
        crc, = struct.unpack_from(">I", view, end - 4)
        if _crc32(view[pos + 4:end - 4]) != crc:
            return None
        body = slice(pos + 8, end - 4)
        if header is None:
            if kind != b"IHDR" or length != 13:
                return None
            header = _accepted_ihdr(bytes(view[body]))
            if header is None:
                return None
        elif kind == b"IDAT":
            if idat_done:
                return None
            idat.append(body)
        elif kind == b"IEND":
            if not idat:
                return None
            return PngHeader(*header, tuple(idat))
        elif kind == b"acTL" or (not kind[0] & 0x20 and kind not in _CRITICAL_OK) \
                or kind == b"IHDR":
            return None  # animated (Pillow shows frame 0), unknown critical, or repeated IHDR
        else:
            idat_done = bool(idat)
        pos = end
    return None  # no IEND: Pillow decides what a truncated file gives


def _accepted_ihdr(ihdr: bytes) -> tuple[int, int, int] | None:
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", ihdr)
    if depth != 8 or colour not in _CHANNELS or compression or filtering or interlace:
        return None
    if not width or not height or _too_many_pixels(width, height):
        return None
    return width, height, _CHANNELS[colour]


def _too_many_pixels(width: int, height: int) -> bool:
    """Images past Pillow's decompression-bomb warning go to Pillow, which warns or refuses
    them as it always did."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    return limit is not None and width * height > limit


def png_route() -> str:
    """The fast PNG route here: ``"native"`` (inflate with ISA-L or zlib, unfilter in the
    ``cpu`` backend's library), ``"pyspng"``, or ``"pillow"`` when neither is installed."""
    if _native_unfilter() is not None:
        return "native"
    return "pillow" if _pyspng is None else "pyspng"


def read_png(source: Source, *, name: str | None = None) -> np.ndarray:
    """A PNG file (path, bytes or open binary file) as a new (H, W, 3) uint8 array,
    pixel-identical to Pillow's ``convert("RGB")``; ``ValueError`` naming the file
    (``name``, else the path) when it cannot be read."""
    data, name = _read_source(source, name)
    header = parse_png(data)
    if header is not None:
        unfilter_rows = _native_unfilter()
        if unfilter_rows is not None:
            pixels = _read_native(data, header, unfilter_rows)
            if pixels is not None:
                return pixels
        elif _pyspng is not None:
            try:
                return _pyspng.load(data, format="RGB")
            except RuntimeError:
                pass  # libspng refused something our walk did not check: Pillow decides
    return _read_with_pillow(data, name)


def _native_unfilter():
    """``vbk_png_unfilter`` of the compiled ``cpu`` library, or None when it is not built."""
    try:
        from vbkernels.cpu._lib import library
    except ImportError:
        return None
    try:
        return library().vbk_png_unfilter
    except Exception:  # noqa: BLE001 - BackendUnavailable, or an old library without it
        return None


def _read_native(data: bytes, header: PngHeader, unfilter_rows) -> np.ndarray | None:
    """Inflate (ISA-L when installed: about twice zlib's speed) and unfilter in C++; None
    when the stream or a filter byte is bad, so that Pillow gives its own verdict."""
    try:
        filtered = _inflate(data, header, next(iter(inflaters().values())), "")
    except ValueError:
        return None
    pixels = np.empty((header.height, header.width, header.channels), np.uint8)
    if unfilter_rows(filtered.ctypes.data, header.height, header.width, header.channels,
                     pixels.ctypes.data) != 0:
        return None
    return _to_rgb(pixels)


def _to_rgb(pixels: np.ndarray) -> np.ndarray:
    """(H, W, channels) -> (H, W, 3) as Pillow's ``convert("RGB")``: alpha dropped, grey
    repeated in R, G and B."""
    channels = pixels.shape[-1]
    if channels == 3:
        return pixels
    if channels == 4:
        return np.ascontiguousarray(pixels[..., :3])
    return np.repeat(pixels[..., :1], 3, axis=-1)


def read_image(source: Source, *, name: str | None = None) -> np.ndarray:
    """Any image Pillow reads (path, bytes or open binary file) as a new (H, W, 3) uint8
    array: PNGs through :func:`read_png`, the rest through Pillow's ``convert("RGB")``.
    ``ValueError`` naming the file for a corrupt, truncated or non-8-bit image."""
    data, name = _read_source(source, name)
    if bytes(data[:8]) == PNG_SIGNATURE:
        return read_png(data, name=name)
    return _read_with_pillow(data, name)


def _prefix(name: str) -> str:
    """``"NAME: "`` for error messages; empty when the caller names the file itself."""
    return f"{name}: " if name else ""


def _read_source(source: Source, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>" if name is None else name
    if isinstance(source, (str, os.PathLike)):
        return Path(source).read_bytes(), str(source) if name is None else name
    if hasattr(source, "read"):
        return source.read(), (getattr(source, "name", None) or "<file>") if name is None else name
    raise TypeError(f"source must be a path, bytes or a binary file, got {type(source).__name__}")


def _read_with_pillow(data: bytes, name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode not in _PILLOW_MODES:
                raise ValueError(f"image mode {img.mode!r} is not 8-bit colour")
            return np.array(img.convert("RGB"))
    except UnidentifiedImageError:
        raise ValueError(f"{_prefix(name)}not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
            Image.DecompressionBombError) as exc:
        raise ValueError(f"{_prefix(name)}cannot read image: {exc}") from exc


# --- The CPU half of a GPU decode, and the NumPy unfilter ---------------------------------

def inflaters() -> dict[str, object]:
    """Installed zlib-stream inflaters, fastest first: ``fn(stream, size) -> bytes``. ISA-L
    inflates a noisy 1080p PNG in about half zlib's time (libdeflate measured the same as
    ISA-L, so it is not a second dependency)."""
    found = {}
    try:
        from isal import isal_zlib

        def isal_inflate(stream, size):
            try:
                return isal_zlib.decompress(stream, bufsize=size)
            except isal_zlib.error as exc:  # not a zlib.error subclass
                raise zlib.error(str(exc)) from None

        found["isal"] = isal_inflate
    except ImportError:
        pass
    found["zlib"] = lambda stream, size: zlib.decompress(stream, bufsize=size)
    return found


def inflate_png(data: bytes, *, inflater: str = "auto", name: str = "<bytes>"):
    """``(header, filtered)`` for a PNG the fast route takes, else ``None``: ``filtered`` is
    the inflated image data as (H, 1 + W*channels) uint8 rows, each a filter byte followed
    by the filtered bytes. ``ValueError`` naming the file when the stream does not inflate
    to a whole image."""
    header = parse_png(data)
    if header is None:
        return None
    found = inflaters()
    if inflater != "auto" and inflater not in found:
        raise ValueError(f"inflater must be 'auto' or one of {sorted(found)}, got {inflater!r}")
    inflate = next(iter(found.values())) if inflater == "auto" else found[inflater]
    return header, _inflate(data, header, inflate, name)


def _inflate(data: bytes, header: PngHeader, inflate, name: str) -> np.ndarray:
    view = memoryview(data)
    stream = b"".join(view[s] for s in header.idat)
    size = header.height * (1 + header.row_bytes)
    try:
        raw = inflate(stream, size)
    except zlib.error as exc:
        raise ValueError(f"{_prefix(name)}PNG image data does not inflate: {exc}") from exc
    if len(raw) < size:
        raise ValueError(f"{_prefix(name)}PNG image data ends after {len(raw)} of {size} bytes")
    # Bytes past the image are ignored, as Pillow does.
    return np.frombuffer(raw, np.uint8, size).reshape(header.height, -1)


def unfilter(filtered: np.ndarray, channels: int, *, name: str = "<bytes>") -> np.ndarray:
    """Undo the PNG row filters: (H, 1 + W*channels) uint8 rows from :func:`inflate_png` ->
    (H, W, channels) uint8 pixels. Exact for any mix of the five filters; fast when rows
    use None/Sub/Up (what Pillow writes for noisy images), ~10 ms a 1080p row on
    Average/Paeth rows, which are sequential along x and run as a Python loop."""
    kinds, rows = filtered[:, 0], filtered[:, 1:]
    height, row_bytes = rows.shape
    if kinds.size and kinds.max() > 4:
        raise ValueError(f"{_prefix(name)}PNG row filter {int(kinds.max())} is not one of 0..4")
    out = np.empty_like(rows)
    none, sub = kinds == 0, kinds == 1
    out[none] = rows[none]
    # Sub adds the pixel to the left: a running sum along x, mod 256 in uint8. Neither
    # None nor Sub looks at the row above, so all of them go at once.
    # torch's uint8 cumsum is 2.3x NumPy's along this strided axis (3.5 vs 8 ms a frame).
    sub_rows = torch.from_numpy(rows[sub].reshape(-1, row_bytes // channels, channels))
    out[sub] = torch.cumsum(sub_rows, 1, dtype=torch.uint8).numpy().reshape(-1, row_bytes)
    above = np.zeros(row_bytes, np.uint8)  # the row above the first is zeros
    for y in np.flatnonzero(kinds >= 2):
        if y:
            above = out[y - 1]
        if kinds[y] == 2:
            np.add(above, rows[y], out=out[y])
        else:
            out[y] = _unfilter_avg_paeth_row(rows[y].tolist(), above.tolist(), kinds[y] == 4,
                                             channels)
    return out.reshape(height, -1, channels)


def _unfilter_avg_paeth_row(row: list[int], above: list[int], paeth: bool,
                            bpp: int) -> list[int]:
    """One Average or Paeth row: each byte needs the reconstructed byte ``bpp`` to its left,
    so this is a loop; on Python ints it is ~10x a NumPy loop over one-pixel slices."""
    out = [0] * len(row)
    for i, (f, b) in enumerate(zip(row, above)):
        a, c = (out[i - bpp], above[i - bpp]) if i >= bpp else (0, 0)
        if paeth:
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        else:
            pred = (a + b) >> 1
        out[i] = (f + pred) & 0xFF
    return out
