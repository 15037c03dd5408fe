"""Hostile PNGs (issue 23): a seeded fuzz over malformed files (bad CRCs, truncated and
split image data, bad filter bytes, wrong declared sizes, bombs) where every case either
gives Pillow's pixels or a ValueError naming the file, with memory bounded by the image;
and the per-process memory bound measured with resource.getrusage in a subprocess."""

import io
import json
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vbkernels.files import PNG_SIGNATURE, png_chunk
from vbkernels.pipeline import png

REPO = Path(__file__).resolve().parents[1]
NAME = "fuzz.png"
_COLOUR = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type


def _chunks(data):
    """[(kind, body)] of a well-formed PNG."""
    pos, found = 8, []
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        found.append((kind, data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return found


def _assemble(chunks):
    return PNG_SIGNATURE + b"".join(png_chunk(kind, body) for kind, body in chunks)


def _raw_rows(pixels, filters):
    """Filtered rows with the given filter bytes, every row filtered as None (the bytes
    then decode as whatever that filter means: a valid, if odd, image)."""
    height = pixels.shape[0]
    rows = pixels.reshape(height, -1)
    return b"".join(bytes([f]) + row.tobytes() for f, row in zip(filters, rows))


def _png(pixels, filters=None, *, width=None, height=None, raw=None, idat_pieces=1,
         level=6):
    h, w = pixels.shape[:2]
    channels = pixels.shape[2]
    raw = raw if raw is not None else _raw_rows(pixels, filters if filters is not None
                                                else [0] * h)
    stream = zlib.compress(raw, level)
    cuts = sorted(set(np.linspace(0, len(stream), idat_pieces + 1, dtype=int).tolist()))
    idat = [(b"IDAT", stream[a:b]) for a, b in zip(cuts, cuts[1:])] or [(b"IDAT", b"")]
    ihdr = struct.pack(">IIBBBBB", width or w, height or h, 8, _COLOUR[channels], 0, 0, 0)
    return _assemble([(b"IHDR", ihdr), *idat, (b"IEND", b"")])


def _pillow(data):
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.array(img.convert("RGB")) if img.mode in png._PILLOW_MODES else None
    except Exception:  # noqa: BLE001 - any refusal: ours must then be a named error
        return None


def _cases(seed, count):
    """(label, file bytes) pairs: one mutation each of a small random image."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        h, w = int(rng.integers(1, 12)), int(rng.integers(1, 12))
        channels = int(rng.choice([1, 2, 3, 4]))
        pixels = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        filters = rng.integers(0, 5, h).tolist()
        kind = ["split_idat", "bad_crc", "truncated", "bad_filter", "wrong_size",
                "flipped_idat", "bomb", "extra_bytes", "short_data"][i % 9]
        data = _png(pixels, filters, idat_pieces=int(rng.integers(1, 6)))
        if kind == "split_idat":
            pass  # valid: several IDAT chunks of odd sizes
        elif kind == "bad_crc":
            bad = bytearray(data)
            bad[int(rng.integers(29, len(data)))] ^= 1 << int(rng.integers(8))
            data = bytes(bad)
        elif kind == "truncated":
            data = data[:int(rng.integers(8, len(data)))]
        elif kind == "bad_filter":
            filters[int(rng.integers(h))] = int(rng.integers(5, 256))
            data = _png(pixels, filters)
        elif kind == "wrong_size":
            data = _png(pixels, filters, width=w + int(rng.integers(-w + 1, 4)) or 1,
                        height=h + int(rng.integers(-h + 1, 4)) or 1)
        elif kind == "flipped_idat":  # damaged deflate data behind a correct CRC
            stream = bytearray(zlib.compress(_raw_rows(pixels, filters)))
            stream[int(rng.integers(len(stream)))] ^= 0xFF
            ihdr = struct.pack(">IIBBBBB", w, h, 8, _COLOUR[channels], 0, 0, 0)
            data = _assemble([(b"IHDR", ihdr), (b"IDAT", bytes(stream)), (b"IEND", b"")])
        elif kind == "bomb":  # far more image data than IHDR declares
            data = _png(pixels, raw=_raw_rows(pixels, filters) + bytes(int(rng.integers(
                1, 4)) << 20), level=9)
        elif kind == "extra_bytes":
            data = _png(pixels, raw=_raw_rows(pixels, filters) + b"\0" * int(rng.integers(1, 9)))
        elif kind == "short_data":
            data = _png(pixels, raw=_raw_rows(pixels, filters)[:-int(rng.integers(1, 3))])
        yield f"{i}:{kind}:{h}x{w}x{channels}", data


@pytest.mark.parametrize("seed", [0, 1])
def test_malformed_pngs_give_pillows_pixels_or_a_named_error(seed):
    outcomes = {"same": 0, "refused": 0}
    for label, data in _cases(seed, 360):
        expected = _pillow(data)
        tracemalloc.start()
        try:
            got = png.read_png(data, name=NAME)
        except ValueError as exc:
            assert str(exc).startswith(f"{NAME}: "), (label, exc)
            outcomes["refused"] += 1
        else:
            assert expected is not None and np.array_equal(got, expected), label
            outcomes["same"] += 1
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        # Every image here is under 12 x 12 pixels: a bomb inflating megabytes must not
        # get past the image's own size (plus Pillow's and NumPy's small buffers).
        assert peak < 256 * 1024 + 2 * len(data), (label, peak)
    assert outcomes["same"] > 50 and outcomes["refused"] > 150, outcomes


def test_bombs_are_refused_and_splits_and_valid_filters_read_exactly():
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    bomb = _png(pixels, raw=_raw_rows(pixels, [0] * 9) + bytes(8 << 20), level=9)
    with pytest.raises(ValueError, match="fuzz.png: PNG image data inflates past"):
        png.read_png(bomb, name=NAME)
    header = png.parse_png(bomb)
    with pytest.raises(ValueError, match="inflates past"):
        png.inflate_png(bomb)
    assert header is not None
    for pieces in (1, 2, 7, 40):
        data = _png(pixels, [1, 2, 3, 4, 0, 4, 3, 2, 1], idat_pieces=pieces)
        assert np.array_equal(png.read_png(data), _pillow(data))


def test_16_bit_rgb_and_rgba_are_refused_not_reduced():
    """Before: Pillow (and so read_image) returned their high bytes as 8-bit RGB."""
    for channels, colour in ((3, 2), (4, 6), (2, 4)):
        rows = np.arange(5 * 4 * channels * 2, dtype=np.uint8).reshape(5, -1)
        raw = b"".join(b"\0" + row.tobytes() for row in rows)
        ihdr = struct.pack(">IIBBBBB", 4, 5, 16, colour, 0, 0, 0)
        data = _assemble([(b"IHDR", ihdr), (b"IDAT", zlib.compress(raw)), (b"IEND", b"")])
        with pytest.raises(ValueError, match="fuzz.png: 16-bit PNG.*not 8-bit"):
            png.read_image(data, name=NAME)


def test_the_pixel_limit_holds_on_both_routes(monkeypatch):
    pixels = np.zeros((30, 40, 3), np.uint8)
    data = _png(pixels)
    jpeg = io.BytesIO()
    Image.fromarray(pixels).save(jpeg, "JPEG")
    for source in (data, jpeg.getvalue()):  # the fast route, then Pillow
        assert png.read_image(source, max_pixels=1200).shape == (30, 40, 3)
        with pytest.raises(ValueError, match="1200 pixels, over the limit of 1199"):
            png.read_image(source, name=NAME, max_pixels=1199)
    monkeypatch.setattr(png, "_native_unfilter", lambda: None)  # pyspng, or Pillow
    with pytest.raises(ValueError, match="over the limit"):
        png.read_image(data, max_pixels=1199)
    # The default is Pillow's own refusal size, and follows PIL.Image.MAX_IMAGE_PIXELS.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    assert png.pixel_limit() == 1000
    for source in (data, jpeg.getvalue()):
        with pytest.raises(ValueError, match="over the limit of 1000"):
            png.read_image(source)
    huge = _png(pixels, width=100_000, height=100_000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)
    with pytest.raises(ValueError, match="over the limit"):
        png.read_image(huge)
    assert png.read_image(data, max_pixels=None).shape == (30, 40, 3)
    with pytest.raises(ValueError, match="max_pixels"):
        png.read_image(data, max_pixels=0)


def test_the_pixel_limit_holds_for_files_sent_to_nvjpeg(tmp_path):
    path = tmp_path / "a.jpg"
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(path)
    png.check_image_size(path, 1200)
    with pytest.raises(ValueError, match="a.jpg: image is 40 x 30"):
        png.check_image_size(path, 1199, name=str(path))
    from vbkernels.pipeline.local import _read_file_bytes

    assert _read_file_bytes(path, 1200) == path.read_bytes()
    with pytest.raises(ValueError, match="over the limit"):
        _read_file_bytes(path, 1199)


_MEASURE = """
import json, resource, sys
from vbkernels.pipeline import png
png.read_image(sys.argv[1])  # warm: imports, the compiled library
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
grew = {}
for path in sys.argv[2:]:  # in order of their bound: the high-water mark only rises
    try:
        result = list(png.read_image(path).shape)
    except ValueError as exc:
        result = str(exc)
    grew[path] = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline, result]
print(json.dumps(grew))
"""


def _bomb_file(path, inflated):
    """A 1 x 1 RGB PNG whose image data inflates to ``inflated`` bytes of zeros."""
    compress = zlib.compressobj(1)
    parts = [compress.compress(b"\0\1\2\3")]
    block = bytes(16 << 20)
    for _ in range(inflated // len(block)):
        parts.append(compress.compress(block))
    parts.append(compress.flush())
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    path.write_bytes(_assemble([(b"IHDR", ihdr), (b"IDAT", b"".join(parts)), (b"IEND", b"")]))


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
def test_memory_is_bounded_by_the_image_not_the_file(tmp_path):
    """Before: a 1 x 1 PNG inflating to 256 MiB took over 256 MiB; a 3 GiB sparse file
    was read whole. Now each costs at most a few MiB over the process's baseline, and a
    real image about its own size a few times over (the bound the README states)."""
    warm = tmp_path / "warm.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(warm)
    bomb = tmp_path / "bomb.png"
    _bomb_file(bomb, 256 << 20)
    sparse = tmp_path / "sparse.png"
    with open(sparse, "wb") as handle:
        handle.truncate(3 << 30)
    rng = np.random.default_rng(0)
    big = tmp_path / "big.png"
    Image.fromarray(rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8)).save(
        big, compress_level=0)
    result = subprocess.run([sys.executable, "-c", _MEASURE, warm, bomb, sparse, big],
                            cwd=REPO, capture_output=True, text=True, check=True)
    grew = {Path(k).stem: v for k, v in json.loads(result.stdout).items()}
    assert "inflates past" in grew["bomb"][1] and grew["bomb"][0] < 32 << 10, grew
    assert "not an image" in grew["sparse"][1] and grew["sparse"][0] < 32 << 10, grew
    image_kb = 1500 * 2000 * 3 // 1024
    assert grew["big"][1] == [1500, 2000, 3]
    assert grew["big"][0] < 3 * image_kb + (32 << 10), grew
