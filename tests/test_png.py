"""The fast PNG read: pixel-identical to Pillow's ``convert("RGB")`` on every type it takes,
Pillow's own result (or error) on everything else, and a ValueError naming the file for a
corrupt or truncated one."""

from __future__ import annotations

import io
import struct
import sys
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from vbkernels.benchmark.png_read import encode_png
from vbkernels.pipeline import png

SHAPES = [(1, 1), (1, 9), (7, 1), (5, 7), (13, 31), (120, 333)]


@pytest.fixture(autouse=True, params=["native", "pyspng"])
def route(request, monkeypatch):
    """Every test runs on both fast routes: the compiled unfilter, and libspng (what runs
    where the cpu library was not built)."""
    if request.param == "pyspng":
        monkeypatch.setattr(png, "_native_unfilter", lambda: None)
    return request.param


def pillow_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def pillow_png(img: Image.Image, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **options)
    return buf.getvalue()


def pixels(shape, channels, seed=0) -> np.ndarray:
    """Noise on a gradient, so Pillow's adaptive filter choice varies between rows."""
    rng = np.random.default_rng(seed)
    h, w = shape
    ramp = (np.arange(h)[:, None, None] * 3 + np.arange(w)[None, :, None] * 5) % 256
    noise = rng.integers(0, 256, (h, w, channels)) * (rng.random((h, 1, 1)) < 0.3)
    out = ((ramp + noise) % 256).astype(np.uint8)
    return out[..., 0] if channels == 1 else out


def filter_kinds(data: bytes) -> set[int]:
    _, filtered = png.inflate_png(data)
    return set(filtered[:, 0].tolist())


def with_chunk_after_ihdr(data: bytes, kind: bytes, body: bytes) -> bytes:
    chunk = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return data[:33] + chunk + data[33:]


def test_fast_route_is_installed(route):
    # The install builds the cpu library and the test extra installs pyspng; without them
    # every test below would pass on Pillow alone.
    assert png.png_route() == route


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", SHAPES)
def test_every_filter_matches_pillow(channels, shape):
    px = pixels(shape, channels)
    filters = np.arange(shape[0]) % 5
    data = encode_png(px, filters)
    assert filter_kinds(data) == set(filters.tolist())
    expected = pillow_rgb(data)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), px)  # the encoder is right
    assert png.parse_png(data) is not None  # the fast route takes it
    got = png.read_png(data)
    assert got.dtype == np.uint8 and got.shape == expected.shape and np.array_equal(got, expected)
    header, filtered = png.inflate_png(data)
    assert header.channels == channels and (header.height, header.width) == shape
    assert np.array_equal(png.unfilter(filtered, channels), px.reshape(*shape, channels))


def test_encoded_corpus_holds_all_five_filters():
    kinds = set()
    for shape in SHAPES[3:]:
        kinds |= filter_kinds(encode_png(pixels(shape, 3), np.arange(shape[0]) % 5))
    assert kinds == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("filt", range(5))
def test_single_filter_images(filt):
    px = pixels((40, 57), 3, seed=filt)
    data = encode_png(px, filt)
    assert filter_kinds(data) == {filt}
    assert np.array_equal(png.read_png(data), pillow_rgb(data))
    _, filtered = png.inflate_png(data)
    assert np.array_equal(png.unfilter(filtered, 3), px)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
@pytest.mark.parametrize("shape", [(1, 1), (31, 17), (300, 401)])
def test_pillow_written_files(mode, shape):
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    data = pillow_png(Image.fromarray(pixels(shape, channels), mode))
    assert png.parse_png(data) is not None
    got = png.read_png(data)
    assert np.array_equal(got, pillow_rgb(data))
    assert got.flags.writeable and got.flags.c_contiguous


def no_pillow(data, name):
    raise AssertionError("the fast route fell back to Pillow")


def test_accepted_files_never_reach_pillow(monkeypatch):
    files = [encode_png(pixels((13, 31), c), np.arange(13) % 5) for c in (1, 2, 3, 4)]
    files.append(pillow_png(Image.fromarray(pixels((40, 50), 3))))
    expected = [pillow_rgb(d) for d in files]
    monkeypatch.setattr(png, "_read_with_pillow", no_pillow)
    for data, want in zip(files, expected):
        got = png.read_png(data)
        assert np.array_equal(got, want) and got.flags.writeable and got.flags.c_contiguous


def test_large_noisy_frame(tmp_path):
    rgb = pixels((1080, 1920), 3, seed=7)
    path = tmp_path / "frame.png"
    Image.fromarray(rgb).save(path)
    assert np.array_equal(png.read_image(path), rgb)


def test_pillow_files_mix_filters():
    kinds = set()
    for seed in range(4):
        kinds |= filter_kinds(pillow_png(Image.fromarray(pixels((200, 300), 3, seed))))
    assert len(kinds) >= 3  # Pillow chooses per row; the fast route does not assume one


@pytest.mark.parametrize("transparency", [(1, 2, 3), None])
def test_rgb_with_transparency_ignores_it(transparency):
    img = Image.fromarray(pixels((9, 11), 3))
    data = pillow_png(img, transparency=transparency) if transparency else pillow_png(img)
    assert np.array_equal(png.read_png(data), pillow_rgb(data))


def fallback_files() -> dict[str, bytes]:
    rgb = Image.fromarray(pixels((23, 29), 3))
    return {
        "palette": pillow_png(rgb.quantize(16)),
        "palette_trns": pillow_png(rgb.quantize(16), transparency=3),
        "apng": pillow_png(rgb, save_all=True, append_images=[rgb.transpose(0)]),
        "private_critical_chunk": with_chunk_after_ihdr(pillow_png(rgb), b"XYZW", b"data"),
    }


@pytest.mark.parametrize("kind", list(fallback_files()))
def test_fallback_types_give_pillows_result(kind):
    data = fallback_files()[kind]
    assert png.parse_png(data) is None
    try:
        expected = pillow_rgb(data)
    except (OSError, SyntaxError):
        with pytest.raises(ValueError, match="<bytes>"):
            png.read_png(data)
    else:
        assert np.array_equal(png.read_png(data), expected)


def test_interlaced_goes_to_pillow():
    data = bytearray(pillow_png(Image.fromarray(pixels((5, 6), 3))))
    data[28] = 1  # IHDR interlace method; the IHDR CRC is then wrong as well
    assert png.parse_png(bytes(data)) is None


@pytest.mark.parametrize("array", [pixels((6, 7), 1).astype(np.uint16) * 257,
                                   pixels((6, 7), 1) > 128])
def test_16_and_1_bit_are_refused_as_before(array):
    # Pillow opens them as "I;16" and "1"; the command line always refused both.
    data = pillow_png(Image.fromarray(array))
    assert png.parse_png(data) is None
    with pytest.raises(ValueError, match="img.png.*not 8-bit"):
        png.read_png(data, name="img.png")


def test_truncated_files_raise_value_error_naming_the_file(tmp_path):
    data = pillow_png(Image.fromarray(pixels((64, 80), 3)))
    for cut in (3, 8, 20, 40, len(data) // 2, len(data) - 30):
        path = tmp_path / f"cut{cut}.png"
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=f"cut{cut}.png"):
            png.read_png(path)
        with pytest.raises(ValueError, match=f"cut{cut}.png"):
            png.read_image(path)


def test_flipped_bytes_raise_value_error(tmp_path):
    # libspng alone returns pixels for most of these; the CRC walk sends them to Pillow.
    data = pillow_png(Image.fromarray(pixels((64, 80), 3)))
    rng = np.random.default_rng(0)
    path = tmp_path / "flipped.png"
    for pos in rng.integers(41, len(data) - 12, 20):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        path.write_bytes(bytes(bad))
        with pytest.raises(ValueError, match="flipped.png"):
            png.read_png(path)


def test_bad_crc_alone_follows_pillow():
    data = bytearray(pillow_png(Image.fromarray(pixels((16, 16), 3))))
    data[-13] ^= 1  # the last IDAT chunk's CRC; the pixels are intact
    data = bytes(data)
    assert png.parse_png(data) is None
    try:
        expected = pillow_rgb(data)
    except (OSError, SyntaxError):
        with pytest.raises(ValueError):
            png.read_png(data)
    else:
        assert np.array_equal(png.read_png(data), expected)


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_bytes(b"hello, world" * 10)
    with pytest.raises(ValueError, match="notes.png.*not an image"):
        png.read_image(path)


def test_read_image_other_formats_and_sources(tmp_path):
    rgb = pixels((20, 30), 3)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    assert np.array_equal(png.read_image(jpeg), pillow_rgb(jpeg))
    data = pillow_png(Image.fromarray(rgb))
    path = tmp_path / "a.png"
    path.write_bytes(data)
    with open(path, "rb") as f:
        assert np.array_equal(png.read_image(f), rgb)
    assert np.array_equal(png.read_image(str(path)), rgb)
    with pytest.raises(TypeError, match="source"):
        png.read_image(3)


def test_without_pyspng_pillow_reads(monkeypatch):
    data = encode_png(pixels((11, 13), 4), np.arange(11) % 5)
    monkeypatch.setattr(png, "_pyspng", None)
    monkeypatch.setattr(png, "_native_unfilter", lambda: None)
    assert png.png_route() == "pillow"
    assert np.array_equal(png.read_png(data), pillow_rgb(data))


def test_without_isal_zlib_inflates(monkeypatch):
    monkeypatch.setitem(sys.modules, "isal", None)
    assert list(png.inflaters()) == ["zlib"]
    assert png._crc32_function() is zlib.crc32
    px = pixels((9, 10), 3)
    data = encode_png(px, 4)
    _, filtered = png.inflate_png(data)
    assert np.array_equal(png.unfilter(filtered, 3), px)
    assert np.array_equal(png.read_png(data), px)


def test_unknown_filter_byte_goes_to_pillow():
    """A filter type past 4 in an otherwise valid file: Pillow's verdict, not ours."""
    px = pixels((6, 8), 3)
    good = encode_png(px, 0)  # signature + IHDR (33 bytes), one IDAT, IEND (12 bytes)
    raw = bytearray(zlib.decompress(good[41:-16]))
    raw[2 * (1 + 8 * 3)] = 7  # row 2's filter byte
    body = zlib.compress(bytes(raw))
    crc = struct.pack(">I", zlib.crc32(b"IDAT" + body))
    data = good[:33] + struct.pack(">I", len(body)) + b"IDAT" + body + crc + good[-12:]
    assert png.parse_png(data) is not None
    try:
        expected = pillow_rgb(data)
    except (OSError, SyntaxError, ValueError):
        with pytest.raises(ValueError):
            png.read_png(data)
    else:
        assert np.array_equal(png.read_png(data), expected)


@pytest.mark.parametrize("inflater", list(png.inflaters()))
def test_inflaters_agree(inflater):
    px = pixels((50, 61), 4)
    data = encode_png(px, np.arange(50) % 5)
    header, filtered = png.inflate_png(data, inflater=inflater)
    assert np.array_equal(png.unfilter(filtered, header.channels), px)


def test_inflate_errors():
    data = encode_png(pixels((9, 10), 3), 1)
    with pytest.raises(ValueError, match="inflater must be"):
        png.inflate_png(data, inflater="nope")
    # A well-formed file whose zlib stream holds too few rows.
    short = zlib.compress(b"\x00" * 31)
    body = data[8:33] + struct.pack(">I", len(short)) + b"IDAT" + short \
        + struct.pack(">I", zlib.crc32(b"IDAT" + short))
    short_png = png.PNG_SIGNATURE + body + data[-12:]
    with pytest.raises(ValueError, match="short.png: PNG image data ends after 31"):
        png.inflate_png(short_png, name="short.png")
    rows = np.zeros((2, 4), np.uint8)
    rows[1, 0] = 7
    with pytest.raises(ValueError, match="row filter 7"):
        png.unfilter(rows, 3)


# --- The GPU half: the Triton unfilter (interpreted on CPU unless CUDA is here) -----------

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def gpu_unfilter():
    pytest.importorskip("triton")
    from vbkernels.triton import png_unfilter
    return png_unfilter


@pytest.mark.parametrize("channels, shape, count", [(3, (6, 7), 2), (1, (11, 4), 1),
                                                     (4, (2, 3), 1), (2, (1, 1), 1)])
def test_triton_unfilter_matches_numpy(gpu_unfilter, channels, shape, count):
    # (11, 4) spans two blocks of rows under the interpreter (8 rows a block).
    rng = np.random.default_rng(channels)
    filtered, expected = [], []
    for i in range(count):
        px = rng.integers(0, 256, (*shape, channels), np.uint8)
        _, rows = png.inflate_png(encode_png(px, (np.arange(shape[0]) + i) % 5))
        filtered.append(rows)
        expected.append(png.unfilter(rows, channels))
    if count * shape[0] >= 5:
        assert {int(k) for r in filtered for k in r[:, 0]} == set(range(5))
    got = gpu_unfilter.unfilter(torch.from_numpy(np.stack(filtered)).to(DEVICE), channels)
    assert np.array_equal(got.cpu().numpy(), np.stack(expected))
    rgb = gpu_unfilter.to_rgb(got).cpu().numpy()
    want = np.stack([pillow_rgb(encode_png(e, 0)) for e in expected])
    assert np.array_equal(rgb, want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_triton_unfilter_on_cuda_matches_numpy(gpu_unfilter):
    """The same check by a name the device check selects (``-k cuda``), on a 1080p-sized
    batch whose rows span many blocks (barriers and volatile loads only matter there)."""
    rng = np.random.default_rng(0)
    filtered, expected = [], []
    for i in range(3):
        px = rng.integers(0, 256, (270, 480, 3), np.uint8)
        _, rows = png.inflate_png(encode_png(px, (np.arange(270) + i) % 5))
        filtered.append(rows)
        expected.append(png.unfilter(rows, 3))
    got = gpu_unfilter.unfilter(torch.from_numpy(np.stack(filtered)).cuda(), 3)
    assert np.array_equal(got.cpu().numpy(), np.stack(expected))


def test_triton_unfilter_checks_its_input(gpu_unfilter):
    rows = torch.zeros((1, 2, 7), dtype=torch.uint8)
    with pytest.raises(ValueError, match="channels must be"):
        gpu_unfilter.unfilter(rows, 4)
    with pytest.raises(ValueError, match="uint8 tensor"):
        gpu_unfilter.unfilter(rows.float(), 3)
    rows[0, 1, 0] = 5
    with pytest.raises(ValueError, match="row filter 5"):
        gpu_unfilter.unfilter(rows, 3)


@pytest.mark.parametrize("inflater", list(png.inflaters()))
def test_broken_stream_raises_value_error(inflater):
    data = encode_png(pixels((9, 10), 3), 1)
    stream = b"\x78\x9c\xff\xff\xff\xff"
    chunk = struct.pack(">I", len(stream)) + b"IDAT" + stream \
        + struct.pack(">I", zlib.crc32(b"IDAT" + stream))
    broken = data[:33] + chunk + data[-12:]
    with pytest.raises(ValueError, match="broken.png: PNG image data does not inflate"):
        png.inflate_png(broken, inflater=inflater, name="broken.png")
    with pytest.raises(ValueError, match="broken.png"):
        png.read_png(broken, name="broken.png")


def test_triton_unfilter_wants_a_gpu_tensor(gpu_unfilter, monkeypatch):
    monkeypatch.setattr(gpu_unfilter.cm, "interpreting", lambda: False)
    with pytest.raises(ValueError, match="CUDA device"):
        gpu_unfilter.unfilter(torch.zeros((1, 2, 7), dtype=torch.uint8), 3)
