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

Memory follows the image, never the file: files are read in 64 KiB pieces (Pillow reads
the same open file when it decides), the image data is inflated as it streams into a
buffer of exactly the size IHDR implies, and more data than that is a ``ValueError``
(corrupt, or a decompression bomb; Pillow ignores such excess). Images over the pixel
limit (:func:`pixel_limit`: Pillow's own refusal size by default) and 16-bit PNGs
(Pillow reduces 16-bit RGB and RGBA to their high byte) are refused on every route.

For a GPU, :func:`inflate_png` does only the CPU half of a PNG decode (chunk walk, CRC,
inflate with ISA-L or zlib) and leaves the per-row filters to the device
(``vbkernels.triton.png_unfilter``); :func:`unfilter` is the NumPy version of that half.
ISA-L inflate + :func:`unfilter` measured as fast as libspng on Pillow-written frames
(mostly Sub/Up rows) but costs 5-10 ms per Average/Paeth row, a Python loop, so it is
not a read route.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import threading
import warnings
import zlib
from dataclasses import dataclass
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


def read_png(source: Source, *, name: str | None = None,
             max_pixels: int | str | None = "pillow") -> np.ndarray:
    """A PNG file (path, bytes or open binary file) as a new (H, W, 3) uint8 array,
    pixel-identical to Pillow's ``convert("RGB")``; ``ValueError`` naming the file
    (``name``, else the path) when it cannot be read, is over ``max_pixels`` (see
    :func:`pixel_limit`), is 16-bit, or its image data inflates past the size its IHDR
    declares (a decompression bomb; Pillow ignores the excess, this refuses the file).

    Memory is bounded by the image, not the file: the file is read in 64 KiB pieces and
    the image data is inflated as it streams, into a buffer of the size IHDR implies."""
    with _opened(source, name) as (stream, name):
        return _read_png_stream(stream, name, pixel_limit(max_pixels))


def _read_png_stream(stream: BinaryIO, name: str, limit: int | None) -> np.ndarray:
    start = stream.tell()
    _check_ihdr(stream.read(8 + 8 + 13), name, limit)
    stream.seek(start)
    pixels = _read_fast(stream, name, limit)
    if pixels is not None:
        return pixels
    stream.seek(start)
    return _read_with_pillow(stream, name, max_pixels=limit)


def _read_fast(stream: BinaryIO, name: str, limit: int | None) -> np.ndarray | None:
    """The fast route's pixels, or None to let Pillow decide."""
    unfilter_rows = _native_unfilter()
    if unfilter_rows is None:
        return _read_pyspng(stream, name) if _pyspng is not None else None
    decoded = _stream_png(stream, name)
    if decoded is None:
        return None
    header, filtered = decoded
    pixels = np.empty((header.height, header.width, header.channels), np.uint8)
    if unfilter_rows(filtered.ctypes.data, header.height, header.width, header.channels,
                     pixels.ctypes.data) != 0:
        return None
    return _to_rgb(pixels)


def _read_pyspng(stream: BinaryIO, name: str) -> np.ndarray | None:
    """libspng on the whole file, for files no larger than an honest PNG of their image
    can be; anything larger (a bomb's extra data) is streamed by :func:`_stream_png` and
    unfiltered in NumPy instead, so memory stays bounded by the image either way."""
    start = stream.tell()
    head = stream.read(8 + 8 + 13)
    stream.seek(start)
    header = _accepted_ihdr(head[16:]) if len(head) == 29 else None
    if header is None:
        return None
    width, height, channels = header
    honest = 2 * height * (1 + width * channels) + (1 << 20)
    data = stream.read(honest + 1)
    if len(data) <= honest:
        if parse_png(data) is None:
            return None
        try:
            return _pyspng.load(data, format="RGB")
        except RuntimeError:
            return None  # libspng refused something our walk did not check: Pillow decides
    stream.seek(start)
    decoded = _stream_png(stream, name)
    if decoded is None:
        return None
    try:
        return _to_rgb(unfilter(decoded[1], decoded[0].channels, name=name))
    except ValueError:
        return None


_PIECE = 1 << 16  # bytes read from a file at a time


def _stream_png(stream: BinaryIO, name: str) -> tuple[PngHeader, np.ndarray] | None:
    """Walk the chunks of a PNG stream the fast route takes (as :func:`parse_png` does,
    CRCs included), inflating its image data as it comes into a buffer of the size IHDR
    implies: ``(header, filtered rows)``, or None to let Pillow decide (a bad CRC, a
    truncated file, a stream that does not inflate). ``ValueError`` when the image data
    inflates past that size."""
    if stream.read(8) != PNG_SIGNATURE:
        return None
    header = inflater = None
    seen_idat = idat_done = False
    while True:
        head = stream.read(8)
        if len(head) < 8:
            return None
        length, kind = struct.unpack(">I4s", head)
        if length > 0x7FFFFFFF:
            return None
        crc = _crc32(kind)
        if header is None:
            if kind != b"IHDR" or length != 13:
                return None
            body = stream.read(13)
            crc = _crc32(body, crc)
            accepted = _accepted_ihdr(body) if len(body) == 13 else None
            if accepted is None:
                return None
            header = PngHeader(*accepted, ())
            inflater = _BoundedInflate(header.height * (1 + header.row_bytes), name)
        elif kind == b"IDAT":
            if idat_done:
                return None
            seen_idat = True
            crc = _read_body(stream, length, crc, inflater.feed)
        elif kind == b"IEND":
            if not seen_idat or _crc32(b"", crc) != _read_crc(stream):
                return None
            return (header, inflater.rows(header.height)) if inflater.complete() else None
        elif kind == b"acTL" or (not kind[0] & 0x20 and kind not in _CRITICAL_OK) \
                or kind == b"IHDR":
            return None  # animated (Pillow shows frame 0), unknown critical, or repeated IHDR
        else:
            idat_done = seen_idat
            crc = _read_body(stream, length, crc)
        if crc is None or crc != _read_crc(stream):
            return None


def _read_body(stream: BinaryIO, length: int, crc: int, consume=None) -> int | None:
    """Read a chunk's body in pieces, updating its CRC; None when the file ends first."""
    while length:
        piece = stream.read(min(length, _PIECE))
        if not piece:
            return None
        length -= len(piece)
        crc = _crc32(piece, crc)
        if consume is not None and not consume(piece):
            return None
    return crc


def _read_crc(stream: BinaryIO) -> int | None:
    data = stream.read(4)
    return struct.unpack(">I", data)[0] if len(data) == 4 else None


class _BoundedInflate:
    """A zlib stream inflated piece by piece into a buffer of exactly ``size`` bytes:
    more output than that is a ``ValueError`` (corrupt, or a decompression bomb), so no
    stream costs more memory than its image."""

    def __init__(self, size: int, name: str, inflater: str = "auto"):
        self.buffer = np.empty(size, np.uint8)
        self.filled = 0
        self.name = name
        self._inflate = zlib.decompressobj() if inflater == "zlib" else _decompressobj()

    def feed(self, data: bytes) -> bool:
        """Inflate ``data``; False when the stream is not valid zlib (Pillow decides)."""
        size = len(self.buffer)
        while data:
            room = size - self.filled
            try:
                # max_length 0 means "unlimited" to zlib: ask for one byte past a full buffer
                out = self._inflate.decompress(data, room or 1)
            except zlib.error:
                return False
            if len(out) > room:
                self._too_much()
            self.buffer[self.filled:self.filled + len(out)] = np.frombuffer(out, np.uint8)
            self.filled += len(out)
            tail = self._inflate.unconsumed_tail
            if not out and len(tail) == len(data):
                return True  # nothing more comes out of this input (end of stream)
            data = tail
        return True

    def complete(self) -> bool:
        """Whether the image data filled the buffer exactly; ``ValueError`` when the
        inflater still holds output past it (its last input fully consumed, the excess
        not yet drawn out)."""
        if self.filled != len(self.buffer):
            return False
        try:
            more = self._inflate.decompress(b"", 1)
        except zlib.error:
            more = b""
        if more:
            self._too_much()
        return True

    def _too_much(self):
        raise ValueError(f"{_prefix(self.name)}PNG image data inflates past the "
                         f"{len(self.buffer)} bytes its IHDR declares (corrupt, or a "
                         f"decompression bomb)")

    def rows(self, height: int) -> np.ndarray:
        return self.buffer.reshape(height, -1)


def _decompressobj():
    """ISA-L's streaming inflater when installed (about twice zlib's speed), else zlib's."""
    try:
        from isal import isal_zlib
    except ImportError:
        return zlib.decompressobj()
    return _IsalInflate(isal_zlib)


class _IsalInflate:
    """ISA-L's decompressobj with its errors as ``zlib.error`` (they are not a subclass)."""

    def __init__(self, isal_zlib):
        self._error = isal_zlib.error
        self._inflate = isal_zlib.decompressobj()

    def decompress(self, data: bytes, max_length: int) -> bytes:
        try:
            return self._inflate.decompress(data, max_length)
        except self._error as exc:
            raise zlib.error(str(exc)) from None

    @property
    def unconsumed_tail(self) -> bytes:
        return self._inflate.unconsumed_tail


def pixel_limit(max_pixels: int | str | None = "pillow") -> int | None:
    """The most pixels an image may have: ``"pillow"`` (the default) is the size at which
    Pillow's ``Image.open`` refuses an image as a decompression bomb, twice
    ``PIL.Image.MAX_IMAGE_PIXELS`` (178,956,970 unless changed; None there: no limit); an
    int sets it; None: no limit. Both routes refuse larger images with a ``ValueError``."""
    if max_pixels == "pillow":
        from PIL import Image

        return None if Image.MAX_IMAGE_PIXELS is None else 2 * int(Image.MAX_IMAGE_PIXELS)
    if max_pixels is None:
        return None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be an integer >= 1, 'pillow' or None, got "
                         f"{max_pixels!r}")
    return max_pixels


def _check_pixels(width: int, height: int, name: str, limit: int | None) -> None:
    if limit is not None and width * height > limit:
        raise ValueError(f"{_prefix(name)}image is {width} x {height} = {width * height} "
                         f"pixels, over the limit of {limit} (a decompression bomb? raise "
                         "max_pixels, on the command line --max-pixels)")


def check_image_size(path, max_pixels: int | str | None = "pillow", *,
                     name: str = "") -> None:
    """``ValueError`` when the image file at ``path`` has more than ``max_pixels`` pixels
    (see :func:`pixel_limit`), from its header alone; for readers that are not this
    module's (nvJPEG on the GPU)."""
    from PIL import Image, UnidentifiedImageError

    limit = pixel_limit(max_pixels)
    if limit is None:
        return
    try:
        with open(path, "rb") as handle, _open_with_limit(Image, handle, None) as img:
            _check_pixels(*img.size, name, limit)
    except (UnidentifiedImageError, OSError, SyntaxError):
        return  # not for this check to say: the reader reports it


def _check_ihdr(head: bytes, name: str, limit: int | None) -> None:
    """Refuse, from its IHDR alone, a PNG over the pixel limit or with 16 bits a channel
    (Pillow would give RGB and RGBA ones reduced to their high byte)."""
    if len(head) < 29 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        return
    width, height, depth = struct.unpack(">IIB", head[16:25])
    if depth == 16:
        raise ValueError(f"{_prefix(name)}16-bit PNG (colour type {head[25]}) is not 8-bit "
                         "colour: the decoders take 8 bits a channel; convert it first")
    _check_pixels(width, height, name, limit)


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


def _to_rgb(pixels: np.ndarray) -> np.ndarray:
    """(H, W, channels) -> (H, W, 3) as Pillow's ``convert("RGB")``: alpha dropped, grey
    repeated in R, G and B."""
    channels = pixels.shape[-1]
    if channels == 3:
        return pixels
    if channels == 4:
        return np.ascontiguousarray(pixels[..., :3])
    return np.repeat(pixels[..., :1], 3, axis=-1)


def read_image(source: Source, *, name: str | None = None,
               max_pixels: int | str | None = "pillow") -> np.ndarray:
    """Any image Pillow reads (path, bytes or open binary file) as a new (H, W, 3) uint8
    array: PNGs through :func:`read_png`, the rest through Pillow's ``convert("RGB")``,
    both read from the file in pieces. ``ValueError`` naming the file for a corrupt,
    truncated, non-8-bit or over-``max_pixels`` image (see :func:`pixel_limit`)."""
    with _opened(source, name) as (stream, name):
        limit = pixel_limit(max_pixels)
        start = stream.tell()
        signature = stream.read(8)
        stream.seek(start)
        if signature == PNG_SIGNATURE:
            return _read_png_stream(stream, name, limit)
        return _read_with_pillow(stream, name, max_pixels=limit)


def _prefix(name: str) -> str:
    """``"NAME: "`` for error messages; empty when the caller names the file itself."""
    return f"{name}: " if name else ""


@contextlib.contextmanager
def _opened(source: Source, name: str | None):
    """``(seekable binary stream, name)`` for a path (opened here, closed after), bytes
    (a view, not a copy) or a binary file (read whole first only when not seekable)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(source), "<bytes>" if name is None else name
    elif isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle:
            yield handle, str(source) if name is None else name
    elif hasattr(source, "read"):
        label = (getattr(source, "name", None) or "<file>") if name is None else name
        seekable = getattr(source, "seekable", lambda: False)()
        yield (source if seekable else io.BytesIO(source.read())), str(label)
    else:
        raise TypeError(f"source must be a path, bytes or a binary file, got "
                        f"{type(source).__name__}")


_PILLOW_LIMIT = threading.Lock()


def _read_with_pillow(stream, name: str, max_pixels: int | None = None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if isinstance(stream, (bytes, bytearray, memoryview)):
        stream = io.BytesIO(stream)
    try:
        with _open_with_limit(Image, stream, max_pixels) as img:
            _check_pixels(*img.size, name, max_pixels)
            img.load()
            if img.mode not in _PILLOW_MODES:
                raise ValueError(f"image mode {img.mode!r} is not 8-bit colour")
            return np.array(img.convert("RGB"))
    except UnidentifiedImageError:
        raise ValueError(f"{_prefix(name)}not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
            Image.DecompressionBombError) as exc:
        message = str(exc)
        if name and message.startswith(_prefix(name)):
            raise
        raise ValueError(f"{_prefix(name)}cannot read image: {message}") from exc


def _open_with_limit(Image, stream, limit: int | None):  # noqa: N803 - the PIL module
    """``Image.open`` with our pixel limit in charge: Pillow's own check is lifted for
    the call (under a lock: it is a module global) and ours runs on ``img.size``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _PILLOW_LIMIT:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                return Image.open(stream)
            finally:
                Image.MAX_IMAGE_PIXELS = saved


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
    return header, _inflate(data, header, next(iter(found)) if inflater == "auto" else inflater,
                            name)


def _inflate(data: bytes, header: PngHeader, inflate, name: str) -> np.ndarray:
    """The image data of an in-memory PNG as (H, 1 + row bytes) rows, inflated into a
    buffer of that size (``inflate`` names the inflater; output past it is refused as a
    bomb, never allocated)."""
    view = memoryview(data)
    bounded = _BoundedInflate(header.height * (1 + header.row_bytes), name, inflate)
    for chunk in header.idat:
        if not bounded.feed(view[chunk]):
            raise ValueError(f"{_prefix(name)}PNG image data does not inflate")
    if not bounded.complete():
        raise ValueError(f"{_prefix(name)}PNG image data ends after {bounded.filled} of "
                         f"{len(bounded.buffer)} bytes")
    return bounded.rows(header.height)


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
