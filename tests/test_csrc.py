"""csrc/ and its two products, the ``cpu`` and ``cuda`` backends.

- nvcc compiles every .cu (as NVRTC will see it) for sm_80 and sm_90 with warnings as
  errors, and g++ the CPU sources, so the device code is checked on machines without a GPU;
- each kernel op of the compiled backends against the torch reference over every input and
  output dtype, on strided views, with NaN pixels: exact where the operations are the same
  IEEE operations in the same order (everything but log1p/expm1, which differ by ulps);
- exact segment choices, distances and labels over all 2^24 uint8 colours;
- the wheel carries the .cu sources and the CPU library, and the installed package finds them.

The lead's contract tests (test_depth/normals/segmentation.py) also run on ``cpu`` (and on
``cuda`` with a GPU) since ``available_backends()`` lists them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import vbkernels
from vbkernels._dispatch import BackendUnavailable, load_backend
from vbkernels.palettes import load_palette

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
CU_FILES = sorted(p.name for p in CSRC.glob("*.cu"))
CPU_FILES = sorted(CSRC.glob("cpu/*.cpp"))

IMAGE_DTYPES = [torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64]
FLOAT_DTYPES = IMAGE_DTYPES[1:]
LABEL_DTYPES = [torch.uint8, torch.int16, torch.int32, torch.int64]


def _cuda_ready() -> bool:
    try:
        load_backend("cuda")
    except BackendUnavailable:
        return False
    return True


CUDA = _cuda_ready()
BACKENDS = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[
        pytest.mark.cuda,
        pytest.mark.skipif(not CUDA, reason="needs CuPy and a CUDA device"),
    ]),
]


def _device(backend: str) -> str:
    return "cuda" if backend == "cuda" else "cpu"


def _ops(backend: str) -> dict:
    return load_backend(backend).ops


REF = load_backend("torch").ops


# --------------------------------------------------------------------------------------
# Compilers
# --------------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_nvcc_compiles_every_cu_for_sm80_and_sm90(tmp_path):
    """The flattened text NVRTC compiles at run time, built by nvcc with -Werror."""
    from vbkernels.cuda._lib import flattened_source

    def compile_one(name: str) -> subprocess.CompletedProcess:
        source = tmp_path / name
        source.write_text(flattened_source(name, CSRC))
        # Device code only (-fatbin), like NVRTC; the host side of the header is g++'s test.
        command = [
            "nvcc", "-std=c++17", "--fmad=false", "-fatbin", str(source), "-o",
            str(source) + ".o", "-gencode", "arch=compute_80,code=sm_80",
            "-gencode", "arch=compute_90,code=sm_90", "-Werror", "all-warnings",
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    assert CU_FILES == ["colormap.cu", "depth.cu", "normals.cu", "points.cu", "segmentation.cu"]
    with ThreadPoolExecutor(len(CU_FILES)) as pool:
        results = list(pool.map(compile_one, CU_FILES))
    for name, result in zip(CU_FILES, results):
        assert result.returncode == 0, f"nvcc {name}:\n{result.stderr}"
        assert (tmp_path / f"{name}.o").stat().st_size > 0


def test_cpu_sources_compile_without_warnings():
    compiler = shutil.which("g++")
    assert compiler, "g++ is needed to build the cpu backend"

    def check(source: Path) -> subprocess.CompletedProcess:
        command = [compiler, "-std=c++17", "-fopenmp", "-fsyntax-only", "-Wall", "-Wextra",
                   "-Werror", str(source)]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(check, CPU_FILES))
    assert len(results) == 6  # colormap, depth, instances, normals, png, segmentation
    for source, result in zip(CPU_FILES, results):
        assert result.returncode == 0, f"g++ {source.name}:\n{result.stderr}"


def test_flattened_source_inlines_each_header_once():
    from vbkernels.cuda._lib import flattened_source

    text = flattened_source("segmentation.cu", CSRC)
    assert '#include "' not in text
    assert text.count("struct Projection") == 1  # vbk_math.cuh, reached through vbk_cuda.cuh
    assert "decode_segmentation_body" in text


def test_cpu_library_is_built():
    """CI builds it (pip install -e . or python setup.py build_ext --inplace); fail loudly."""
    backend = load_backend("cpu")
    assert backend.devices == frozenset({"cpu"})
    assert "cpu" in __import__("vbkernels").available_backends()


def test_missing_library_says_how_to_build_it(monkeypatch, tmp_path):
    from vbkernels.cpu import _lib

    monkeypatch.setattr(_lib, "PACKAGE_DIR", tmp_path)
    monkeypatch.setattr(_lib, "_library", None)
    with pytest.raises(BackendUnavailable, match="g\\+\\+"):
        _lib.library()


def test_unsupported_dtype_is_a_type_error():
    rgb = torch.zeros(1, 2, 2, 3, dtype=torch.int32)
    with pytest.raises(TypeError, match="int32"):
        _ops("cpu")["hilbert_project"](rgb, torch.empty(1, 2, 2))


# --------------------------------------------------------------------------------------
# Kernel ops against the torch reference
# --------------------------------------------------------------------------------------

def _image(dtype, shape=(2, 5, 7), seed=0, nan=True) -> torch.Tensor:
    """A channels-first strided view (N, H, W, 3) of random values, ties and a NaN pixel."""
    gen = torch.Generator().manual_seed(seed)
    n, h, w = shape
    if dtype == torch.uint8:
        x = torch.randint(0, 256, (n, 3, h, w), generator=gen, dtype=torch.uint8)
        x[0, :, 0, 0] = torch.tensor([141, 114, 46])  # equidistant from segments 0 and 1
    else:
        x = (torch.rand(n, 3, h, w, generator=gen, dtype=torch.float64) * 1.2 - 0.1).to(dtype)
        if nan:
            x[-1, 1, -1, -1] = float("nan")
    return x.movedim(1, -1)


def _out(shape, dtype, device, channels=False) -> torch.Tensor:
    """A non-contiguous destination pre-filled with junk, so unwritten elements show."""
    full = (*shape, 3) if channels else shape
    big = torch.full((*full[:-1], full[-1] * 2), 77, dtype=torch.float64).to(dtype)
    return big[..., ::2].to(device) if device == "cpu" else big.to(device)[..., ::2]


def _same(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a.cpu(), b.cpu(), rtol=0, atol=0, equal_nan=True)


# One unit in the last place, relative, per float dtype.
ULP = {torch.float16: 9.8e-4, torch.bfloat16: 7.9e-3, torch.float32: 1.2e-7, torch.float64: 2.3e-16}


def _within_ulp(a: torch.Tensor, b: torch.Tensor, work: torch.dtype = torch.float32) -> None:
    """Results through sqrt and a division: ours is correctly rounded, torch's CPU float32
    sqrt is not always (torch.sqrt(4041.0) is an ulp high), so allow 2.5 ulps of the working
    precision, or one ulp of a narrower output that rounds it."""
    rtol = max(2.5 * ULP[work], ULP[a.dtype])
    torch.testing.assert_close(a.cpu(), b.cpu(), rtol=rtol, atol=0, equal_nan=True)


def _assert_correctly_rounded_sqrt_of_integers(dist: torch.Tensor) -> None:
    """uint8 distances are sqrt of exact integers: each must be that sqrt rounded once."""
    d2 = (dist.double() ** 2).round()
    assert torch.equal(dist, torch.sqrt(d2).float())


def _run_both(backend, op, ref_args, make_args):
    """Run ``op`` of ``backend`` on device copies and the reference on CPU copies."""
    device = _device(backend)
    ours = make_args(device)
    theirs = make_args("cpu")
    _ops(backend)[op](*ours)
    REF[op](*theirs)
    return ours, theirs


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rgb_dtype", IMAGE_DTYPES, ids=str)
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float64], ids=str)
def test_project_and_depth(backend, rgb_dtype, out_dtype):
    rgb = _image(rgb_dtype)
    shape = rgb.shape[:3]
    dev = _device(backend)
    t, t_ref = _out(shape, out_dtype, dev), _out(shape, out_dtype, "cpu")
    _ops(backend)["hilbert_project"](rgb.to(dev), t)
    REF["hilbert_project"](rgb, t_ref)
    _same(t, t_ref)
    for max_depth in (None, 9.0):
        depth, dist = _out(shape, out_dtype, dev), _out(shape, torch.float32, dev)
        depth_ref, dist_ref = _out(shape, out_dtype, "cpu"), _out(shape, torch.float32, "cpu")
        _ops(backend)["decode_depth"](rgb.to(dev), depth, dist, -3.0, 10 / 3, max_depth)
        REF["decode_depth"](rgb, depth_ref, dist_ref, -3.0, 10 / 3, max_depth)
        _within_ulp(dist, dist_ref)
        if rgb_dtype == torch.uint8:
            _assert_correctly_rounded_sqrt_of_integers(dist.cpu())
        # log1p/expm1 come from different libraries: a few ulps apart.
        torch.testing.assert_close(depth.cpu(), depth_ref, rtol=1e-6, atol=0, equal_nan=True)
    depth = _out(shape, out_dtype, dev)
    _ops(backend)["decode_depth"](rgb.to(dev), depth, None, -5.5, 12.0, None)
    REF["decode_depth"](rgb, depth_ref, None, -5.5, 12.0, None)
    torch.testing.assert_close(depth.cpu(), depth_ref, rtol=1e-6, atol=0, equal_nan=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rgb_dtype", IMAGE_DTYPES, ids=str)
@pytest.mark.parametrize("out_dtype", FLOAT_DTYPES, ids=str)
def test_decode_normals(backend, rgb_dtype, out_dtype):
    rgb = _image(rgb_dtype, seed=1)
    rgb[0, 0, 1] = torch.tensor([127.5 / 255] * 3 if rgb_dtype != torch.uint8 else [128] * 3,
                                dtype=torch.float64).to(rgb_dtype)  # |n| ~ 0: zero vector
    shape, dev = rgb.shape[:3], _device(backend)
    for flip in (False, True):
        normals, norm = _out(shape, out_dtype, dev, True), _out(shape, torch.float32, dev)
        normals_ref = _out(shape, out_dtype, "cpu", True)
        norm_ref = _out(shape, torch.float32, "cpu")
        _ops(backend)["decode_normals"](rgb.to(dev), normals, norm, flip, 1e-6)
        # uint8 is normalised exactly: compare with float64 (docs/format.md, Normals).
        if rgb_dtype == torch.uint8:
            _close_to_float64_normals(rgb, normals.cpu(), norm.cpu(), flip)
            continue
        REF["decode_normals"](rgb, normals_ref, norm_ref, flip, 1e-6)
        work = torch.float64 if rgb_dtype == torch.float64 else torch.float32
        _within_ulp(normals, normals_ref, work)
        _within_ulp(norm, norm_ref, work)


def _close_to_float64_normals(rgb, normals, norm, flip, eps=1e-6):
    """uint8 normals within 1e-6 of the float64 ones (or an ulp of a narrower output), and
    |n| within 2.5 float32 ulps."""
    n = rgb.to(torch.float64).mul_(2 / 255).sub_(1)
    length = torch.sqrt((n * n).sum(-1, keepdim=True))
    unit = torch.where(length < eps, 0.0, n / length)
    if flip:
        unit[..., 1:] *= -1
    # Plain reductions rather than assert_close: this runs on all 2^24 colours.
    worst = float((normals.double() - unit).abs_().max())
    assert worst <= max(1e-6, ULP[normals.dtype]), worst
    worst_norm = float(((norm.double() - length[..., 0]) / length[..., 0]).abs_().max())
    assert worst_norm <= 2.5 * ULP[torch.float32], worst_norm


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rgb_dtype", IMAGE_DTYPES, ids=str)
@pytest.mark.parametrize("label_dtype", LABEL_DTYPES, ids=str)
def test_decode_segmentation(backend, rgb_dtype, label_dtype):
    rgb = _image(rgb_dtype, seed=2)
    gen = torch.Generator().manual_seed(3)
    work = torch.float64 if rgb_dtype == torch.float64 else torch.float32
    if rgb_dtype == torch.uint8:
        palette = torch.randint(0, 256, (37, 3), generator=gen).to(work)
        palette[5] = palette[2]  # a duplicate colour: the lower index must win
        max_dist2 = float(60 * 60)
    else:
        palette = (torch.rand(37, 3, generator=gen, dtype=torch.float64) * 255).to(work)
        max_dist2 = 3600.5
    shape, dev = rgb.shape[:3], _device(backend)
    for threshold in (None, max_dist2):
        labels, dist = _out(shape, label_dtype, dev), _out(shape, torch.float32, dev)
        labels_ref, dist_ref = _out(shape, label_dtype, "cpu"), _out(shape, torch.float32, "cpu")
        _ops(backend)["decode_segmentation"](rgb.to(dev), palette.to(dev), labels, dist,
                                             threshold, 99)
        REF["decode_segmentation"](rgb, palette, labels_ref, dist_ref, threshold, 99)
        _same(labels, labels_ref)
        _within_ulp(dist, dist_ref, work)


def test_decode_segmentation_palette_larger_than_a_tile():
    """300 colours: more than one 256-colour tile of the CUDA kernel, and many CPU lanes."""
    backends = ["cpu"] + (["cuda"] if CUDA else [])
    rgb = _image(torch.uint8, shape=(1, 9, 31), seed=4)
    palette = torch.randint(0, 256, (300, 3), generator=torch.Generator().manual_seed(5))
    palette = palette.float()
    palette[290] = torch.tensor([0.0, 0.0, 0.0])
    rgb[0, 0, 0] = 0  # nearest only in the second tile
    labels_ref = _out(rgb.shape[:3], torch.int64, "cpu")
    REF["decode_segmentation"](rgb, palette, labels_ref, None, None, 255)
    assert labels_ref[0, 0, 0] == 290
    for backend in backends:
        dev = _device(backend)
        labels = _out(rgb.shape[:3], torch.int64, dev)
        _ops(backend)["decode_segmentation"](rgb.to(dev), palette.to(dev), labels, None, None, 255)
        _same(labels, labels_ref)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("src_dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("rgb_dtype", IMAGE_DTYPES, ids=str)
def test_walk_and_encoders(backend, src_dtype, rgb_dtype):
    gen = torch.Generator().manual_seed(6)
    shape = (2, 4, 9)
    t = (torch.rand(shape, generator=gen, dtype=torch.float64) * 1.2 - 0.1)
    t[0, 0, :3] = torch.tensor([0.0, 1.0, 3 / 7])
    t = t.to(src_dtype)
    depth = (torch.rand(shape, generator=gen, dtype=torch.float64) * 80)
    depth[0, 0, :2] = torch.tensor([0.0, float("inf")])
    depth = depth.to(src_dtype)
    normals = torch.nn.functional.normalize(
        torch.randn(*shape, 3, generator=gen, dtype=torch.float64), dim=-1)
    normals = normals.to(src_dtype).movedim(-1, 1).contiguous().movedim(1, -1)  # strided view
    cases = [
        ("hilbert_walk", lambda d: (t.to(d), _out(shape, rgb_dtype, d, True))),
        ("encode_depth", lambda d: (depth.to(d), _out(shape, rgb_dtype, d, True), -3.0, 10 / 3)),
        ("encode_normals", lambda d: (normals.to(d), _out(shape, rgb_dtype, d, True), False)),
        ("encode_normals", lambda d: (normals.to(d), _out(shape, rgb_dtype, d, True), True)),
    ]
    for op, make in cases:
        ours, theirs = _run_both(backend, op, None, make)
        if op == "encode_depth" and rgb_dtype == torch.float64:
            # float64 log1p/expm1 of different libraries, then 1 - s near segment ends.
            torch.testing.assert_close(ours[1].cpu(), theirs[1], rtol=0, atol=1e-12)
        else:
            _same(ours[1], theirs[1])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("label_dtype", [torch.uint8, torch.int8, torch.int16, torch.int32,
                                         torch.int64], ids=str)
def test_encode_segmentation(backend, label_dtype):
    gen = torch.Generator().manual_seed(7)
    low = 0 if label_dtype == torch.uint8 else -3
    labels = torch.randint(low, 25, (2, 5, 6), generator=gen).to(label_dtype).transpose(1, 2)
    palette = torch.randint(0, 256, (20, 3), generator=gen, dtype=torch.uint8)
    ignore = torch.tensor([1, 2, 3], dtype=torch.uint8)
    ours, theirs = _run_both(
        backend, "encode_segmentation", None,
        lambda d: (labels.to(d), palette.to(d), _out(labels.shape, torch.uint8, d, True),
                   ignore.to(d)),
    )
    _same(ours[2], theirs[2])


@pytest.mark.parametrize("backend", BACKENDS)
def test_float64_encoding_keeps_finite_depth_off_white(backend):
    """With the defaults t = 1 - (1 + d/10)^-2; on the last walk segment (magenta -> white)
    green is 7t - 6 = 1 - 7 (1 + d/10)^-2, which float64 can still tell from 1 at d = 1e9
    (-expm1 would saturate to white, the colour of infinite depth)."""
    dev = _device(backend)
    depth = torch.tensor([1e6, 1e8, 1e9, float("inf")], dtype=torch.float64).view(1, 1, 4)
    rgb = _out((1, 1, 4), torch.float64, dev, True)
    _ops(backend)["encode_depth"](depth.to(dev), rgb, -3.0, 10 / 3)
    green = rgb[0, 0, :, 1].cpu()
    gap = 7 * (1 + depth[0, 0, :3] / 10) ** -2
    assert bool((green[:3] < 1).all()) and float(green[3]) == 1.0
    # t rounds to 1.1e-16 and the walk position 7t to 8.9e-16 (its ulp near 7).
    torch.testing.assert_close(1 - green[:3], gap, rtol=0, atol=9e-16)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_and_single_pixel(backend):
    dev = _device(backend)
    for shape in [(0, 4, 4), (3, 0, 5), (1, 1, 1)]:
        rgb = torch.full((*shape, 3), 200, dtype=torch.uint8, device=dev)
        t = torch.full(shape, -1.0, device=dev)
        _ops(backend)["hilbert_project"](rgb, t)
        ref = torch.full(shape, -1.0)
        REF["hilbert_project"](rgb.cpu(), ref)
        _same(t, ref)


def test_every_float16_value_as_input():
    """All 65536 half bit patterns (NaN, inf, subnormals) read by the hand-written widening."""
    bits = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16)
    values = bits.view(torch.float16).reshape(1, -1, 1).expand(1, 65536, 3).clone()
    values[..., 1] = values[..., 1].roll(1)
    values = values.reshape(1, 256, 256, 3)
    ours, ref = torch.empty(1, 256, 256), torch.empty(1, 256, 256)
    _ops("cpu")["hilbert_project"](values, ours)
    REF["hilbert_project"](values, ref)
    _same(ours, ref)
    bf = bits.view(torch.bfloat16).reshape(1, 256, 256, 1).expand(1, 256, 256, 3)
    _ops("cpu")["hilbert_project"](bf, ours)
    REF["hilbert_project"](bf, ref)
    _same(ours, ref)


def test_float16_and_bfloat16_rounding_of_outputs():
    """Narrowing float32 -> half/bfloat16 (round to nearest even, overflow, subnormals, NaN)
    matches torch for a spread of float32 values, through hilbert_walk's float outputs."""
    gen = torch.Generator().manual_seed(8)
    t = torch.cat([torch.rand(4000, generator=gen, dtype=torch.float64),
                   torch.tensor([0.0, 1e-9, 1e-6, 3e-5, 6.1e-5, 0.5, 1 / 7, 1.0])])
    t = t.reshape(1, 1, -1)
    for dtype in (torch.float16, torch.bfloat16):
        ours = torch.empty(1, 1, t.shape[-1], 3, dtype=dtype)
        ref = torch.empty_like(ours)
        _ops("cpu")["hilbert_walk"](t, ours)
        REF["hilbert_walk"](t, ref)
        _same(ours, ref)


def _walk_positions(rgb: torch.Tensor) -> torch.Tensor:
    """Position 0..1785 along the walk of uint8 colours on it (255 k + offset on segment k)."""
    t = torch.empty(rgb.shape[:-1], dtype=torch.float64)
    REF["hilbert_project"](rgb, t)
    return torch.round(t * 1785).to(torch.int64)


def _around(values: torch.Tensor, steps: int = 3) -> torch.Tensor:
    """values and their neighbours up to ``steps`` representable numbers either side."""
    out, up, down = [values], values, values
    for _ in range(steps):
        up = torch.nextafter(up, torch.tensor(float("inf"), dtype=values.dtype))
        down = torch.nextafter(down, torch.tensor(float("-inf"), dtype=values.dtype))
        out += [up, down]
    return torch.cat(out)


@pytest.mark.parametrize("op", ["hilbert_walk", "encode_depth"])
@pytest.mark.parametrize("src_dtype", FLOAT_DTYPES, ids=str)
def test_uint8_encoders_round_like_their_float64_points(op, src_dtype):
    """uint8 encode_depth/hilbert_walk of the cpu backend look the colour up in a table of
    the inputs where the rounded colour changes (no log1p/expm1 per pixel). They must write
    exactly round-half-even(255 * point) of the float64 points the direct path computes, on
    and a few representable numbers around every rounding boundary, and agree with the torch
    reference: exactly for hilbert_walk, within one walk position (float64 log1p/expm1 of
    different libraries) and only on boundaries for encode_depth."""
    gen = torch.Generator().manual_seed(9)
    t_edges = (torch.arange(1, 1786, dtype=torch.float64) - 0.5) / 1785
    edges = t_edges if op == "hilbert_walk" else vbkernels.inverse_power_transform(t_edges)
    spread = torch.rand(20000, generator=gen, dtype=torch.float64)
    spread = spread * 1.2 - 0.1 if op == "hilbert_walk" else 0.5 * 160.0 ** spread
    specials = torch.tensor([0.0, -0.0, 1e-45, 1e-40, 1e-30, 1e-8, 1.0, 7.0, 412.0, 413.0,
                             1e30, 1e300, float("inf"), -1e-30, -1.0, -10.0, -20.0])
    x = torch.cat([_around(edges.to(src_dtype)), spread.to(src_dtype), specials.to(src_dtype)])
    x = x.reshape(1, 1, -1)
    args = (-3.0, 10 / 3) if op == "encode_depth" else ()
    points = torch.empty(x.shape + (3,), dtype=torch.float64)
    _ops("cpu")[op](x, points, *args)
    expected = torch.round(points * 255.0).clamp(0, 255).to(torch.uint8)
    for ours in (torch.empty_like(expected), _out(x.shape, torch.uint8, "cpu", True)):
        _ops("cpu")[op](x, ours, *args)  # packed HWC, then strided channels
        _same(ours, expected)
    ref = torch.empty(x.shape + (3,), dtype=torch.uint8)
    REF[op](x, ref, *args)
    if op == "hilbert_walk":
        _same(ours, ref)
        return
    off = (_walk_positions(ours) - _walk_positions(ref)).abs()
    assert off.max() <= 1
    assert off[0, 0, edges.numel() * 7:].sum() == 0  # off-boundary values agree exactly


# --------------------------------------------------------------------------------------
# Every uint8 colour
# --------------------------------------------------------------------------------------

def _all_colours() -> torch.Tensor:
    """All 2^24 uint8 colours as a (1, 4096, 4096, 3) image, index (r << 16) | (g << 8) | b."""
    index = torch.arange(1 << 24, dtype=torch.int32)
    rgb = torch.stack([index >> 16, (index >> 8) & 255, index & 255], dim=-1)
    return rgb.to(torch.uint8).reshape(1, 4096, 4096, 3)


@pytest.fixture(scope="module")
def all_colours():
    return _all_colours()


def _walk_dist2(rgb: torch.Tensor) -> torch.Tensor:
    """Squared distance to the walk in integers: the 7 segments' fixed-channel offsets."""
    r, g, b = (rgb[..., i].to(torch.int32) for i in range(3))
    lo = [r * r, g * g, b * b]
    hi = [(255 - r) ** 2, (255 - g) ** 2, (255 - b) ** 2]
    per_segment = [lo[1] + lo[2], hi[0] + lo[2], hi[1] + lo[2], lo[0] + hi[1], lo[0] + hi[2],
                   lo[1] + hi[2], hi[0] + hi[2]]
    return torch.stack(per_segment).amin(dim=0)


def test_all_uint8_colours_segment_choice_and_distance_exact(all_colours):
    shape = all_colours.shape[:3]
    t, t_ref = torch.empty(shape), torch.empty(shape)
    _ops("cpu")["hilbert_project"](all_colours, t)
    REF["hilbert_project"](all_colours, t_ref)
    assert torch.equal(t, t_ref)  # same segment, same position, bit for bit
    depth, dist = torch.empty(shape), torch.empty(shape)
    _ops("cpu")["decode_depth"](all_colours, depth, dist, -3.0, 10 / 3, None)
    assert torch.equal(dist, torch.sqrt(_walk_dist2(all_colours).double()).float())
    steps = (t_ref.double() * 1785).round()  # uint8 t is (k*255 + position)/1785 exactly
    u = (1785 - steps) / 1785
    expected = 10.0 * (u ** -0.5 - 1.0)  # docs/format.md, Depth, with the defaults, in float64
    finite = u > 0
    torch.testing.assert_close(depth[finite].double(), expected[finite], rtol=2e-6, atol=1e-7)
    assert torch.isinf(depth[~finite]).all()


@pytest.mark.parametrize("lam, c, max_depth, out_dtype, strided, rows", [
    (-3.0, 10 / 3, None, torch.float32, False, 4096),  # every colour, contiguous fast path
    (-5.5, 12.0, 9.0, torch.float64, True, 1024),  # a quarter of them, strided views
])
def test_all_uint8_colours_depth_equals_the_reference(all_colours, lam, c, max_depth, out_dtype,
                                                      strided, rows):
    """uint8 depth is a gather from a 7 x 256 table the torch reference computed: every
    colour's depth is the reference's bit for bit."""
    rgb = all_colours[:, 4096 - rows:]  # the last rows hold every segment (white included)
    depth = torch.empty(rgb.shape[:3], dtype=out_dtype)
    if strided:  # channels-first memory seen as HWC, into a transposed output
        rgb = rgb.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)
        depth = torch.empty(rgb.shape[2], rgb.shape[1], dtype=out_dtype).t().unsqueeze(0)
    _ops("cpu")["decode_depth"](rgb, depth, None, lam, c, max_depth)
    expected = torch.empty(rgb.shape[:3], dtype=out_dtype)
    REF["decode_depth"](rgb, expected, None, lam, c, max_depth)
    assert torch.equal(depth, expected)


def test_all_uint8_colours_normals_within_1e6_of_float64(all_colours):
    """Normals near grey lose float32 precision when formed as 2p/255 - 1; the exact
    integer vector keeps every colour within 1e-6 (worst before: (127, 128, 128))."""
    rows = all_colours.shape[1] // 8
    for start in range(0, all_colours.shape[1], rows):
        rgb = all_colours[:, start:start + rows]
        normals = torch.empty(rgb.shape)
        norm = torch.empty(rgb.shape[:3])
        flip = start % (2 * rows) == 0
        _ops("cpu")["decode_normals"](rgb, normals, norm, flip, 1e-6)
        _close_to_float64_normals(rgb, normals, norm, flip)


def _tie_palette() -> torch.Tensor:
    """Cityscapes plus a duplicate and a pair two apart, so exact ties decide many colours."""
    colours = torch.as_tensor(load_palette("cityscapes").colors).to(torch.float32)
    extra = torch.tensor([colours[3].tolist(), [10.0, 10.0, 10.0], [10.0, 10.0, 12.0]])
    return torch.cat([colours, extra])


def test_all_uint8_colours_labels_exact(all_colours):
    palette = _tie_palette()
    shape = all_colours.shape[:3]
    labels, dist = torch.empty(shape, dtype=torch.int16), torch.empty(shape)
    labels_ref, dist_ref = torch.empty(shape, dtype=torch.int16), torch.empty(shape)
    from vbkernels.cpu import segmentation

    segmentation.LABEL_TABLES.clear()
    _ops("cpu")["decode_segmentation"](all_colours, palette, labels, dist, 900.0, 255)
    REF["decode_segmentation"](all_colours, palette, labels_ref, dist_ref, 900.0, 255)
    assert torch.equal(labels, labels_ref)
    assert torch.equal((dist.double() ** 2).round(), (dist_ref.double() ** 2).round())
    _assert_correctly_rounded_sqrt_of_integers(dist)
    # The 2^24-entry table is the direct search's answer for every colour.
    nearest = torch.empty(shape, dtype=torch.int16)
    _ops("cpu")["decode_segmentation"](all_colours, palette, nearest, None, None, 255)
    table = segmentation.build_label_table(palette)
    assert torch.equal(table, nearest.reshape(-1))


def test_label_table_is_bought_after_renting(monkeypatch):
    """Ski rental: direct search until the palette has labelled RENT_PIXELS, then a table
    whose labels and distances equal the direct search's."""
    from vbkernels.cpu import segmentation

    monkeypatch.setattr(segmentation, "RENT_PIXELS", 300)
    tables = segmentation.LabelTables()
    monkeypatch.setattr(segmentation, "LABEL_TABLES", tables)
    palette = torch.as_tensor(load_palette("ade20k").colors).to(torch.float32)
    rgb = _image(torch.uint8, shape=(2, 10, 11), seed=9)  # 220 pixels a call
    runs = []
    for _ in range(3):
        labels, dist = torch.empty(2, 10, 11, dtype=torch.int64), torch.empty(2, 10, 11)
        _ops("cpu")["decode_segmentation"](rgb, palette, labels, dist, 400.0, 255)
        runs.append((labels, dist, tables._table is not None))
    assert [r[2] for r in runs] == [False, False, True]  # 220, 440 >= 300: bought on call 2
    for labels, dist, _ in runs[1:]:
        _same(labels, runs[0][0])
        _same(dist, runs[0][1])
    small = palette[:3].contiguous()
    assert tables.table_for(small, 10**9) is None  # tiny palettes never use a table


# --------------------------------------------------------------------------------------
# Packaging
# --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_wheel_ships_sources_and_cpu_library(tmp_path):
    """Build the wheel, unpack it as an install, and import it with the checkout hidden."""
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("vbkernels-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    for name in ["vbk_math.cuh", "vbk_cuda.cuh", *CU_FILES]:
        assert f"vbkernels/_csrc/{name}" in names
    assert any(n.startswith("vbkernels/_vbk_cpu") and n.endswith(".so") for n in names)

    deps = Path(torch.__file__).resolve().parent.parent  # torch, numpy, ... but not vbkernels
    probe = (
        "import vbkernels, vbkernels.cpu._lib as c, vbkernels.cuda._lib as g\n"
        "from vbkernels._dispatch import load_backend\n"
        "import torch\n"
        "site = {site!r}\n"
        "assert vbkernels.__file__.startswith(site), vbkernels.__file__\n"
        "assert str(c.library_path()).startswith(site), c.library_path()\n"
        "assert str(g.source_dir()).startswith(site), g.source_dir()\n"
        "assert 'decode_segmentation_body' in g.flattened_source('segmentation.cu')\n"
        "rgb = torch.tensor([[[[0, 0, 255]]]], dtype=torch.uint8)\n"
        "t = torch.empty(1, 1, 1)\n"
        "load_backend('cpu').ops['hilbert_project'](rgb, t)\n"
        "assert abs(t.item() - 5 / 7) < 1e-7, t\n"
        "print('ok')\n"
    ).format(site=str(tmp_path / "site"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(deps)])}
    # -S: no site-packages processing, so an editable install of the checkout cannot leak in.
    run = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_install_succeeds_without_a_compiler(tmp_path):
    """No working compiler: the build warns that the cpu backend is off and still succeeds."""
    env = {**os.environ, "CC": "false", "CXX": "false"}
    run = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-lib", str(tmp_path / "lib"),
         "--build-temp", str(tmp_path / "tmp")],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "the cpu backend was not built" in run.stdout + run.stderr
    assert not list(tmp_path.rglob("_vbk_cpu*.so"))


# --------------------------------------------------------------------------------------
# CUDA only
# --------------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs CuPy and a CUDA device")
def test_cuda_runs_on_the_current_stream():
    rgb = _image(torch.uint8, shape=(4, 64, 64), seed=10).cuda()
    stream = torch.cuda.Stream()
    t = torch.full(rgb.shape[:3], -1.0, device="cuda")
    torch.cuda.synchronize()
    with torch.cuda.stream(stream):
        _ops("cuda")["hilbert_project"](rgb, t)
    stream.synchronize()
    ref = torch.empty(rgb.shape[:3])
    REF["hilbert_project"](rgb.cpu(), ref)
    _same(t, ref)


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs CuPy and a CUDA device")
def test_cuda_compile_error_carries_the_nvrtc_log(monkeypatch):
    from vbkernels.cuda import _lib

    monkeypatch.setattr(_lib, "flattened_source", lambda name, directory=None: "int broken(")
    with pytest.raises(RuntimeError, match="NVRTC"):
        _lib.module("broken_family", torch.cuda.current_device())


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs CuPy and a CUDA device")
def test_cuda_all_uint8_colours_exact(all_colours):
    rgb = all_colours.cuda()
    shape = rgb.shape[:3]
    t, t_ref = torch.empty(shape, device="cuda"), torch.empty(shape)
    _ops("cuda")["hilbert_project"](rgb, t)
    REF["hilbert_project"](all_colours, t_ref)
    assert torch.equal(t.cpu(), t_ref)
    palette = _tie_palette()
    labels = torch.empty(shape, dtype=torch.int16, device="cuda")
    labels_ref = torch.empty(shape, dtype=torch.int16)
    _ops("cuda")["decode_segmentation"](rgb, palette.cuda(), labels, None, 900.0, 255)
    REF["decode_segmentation"](all_colours, palette, labels_ref, None, 900.0, 255)
    assert torch.equal(labels.cpu(), labels_ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sanitizer_script(backend):
    """bench/sanitize_ops.py, the script the GPU run wraps in compute-sanitizer."""
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "sanitize_ops.py"), "--device",
                          _device(backend), "--backends", backend],
                         capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0 and "\n0 failure(s)" in run.stdout, run.stdout + run.stderr
    assert run.stdout.count(" ok\n") >= 15, run.stdout  # every case ran


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_are_registered_torch_ops(backend):
    """torch.library.opcheck: schema, fake (meta) kernel, autograd registration, AOT dispatch."""
    dev = _device(backend)
    ops = _ops(backend)
    rgb = torch.randint(0, 256, (1, 4, 5, 3), dtype=torch.uint8, device=dev)
    torch.library.opcheck(ops["decode_depth"], (rgb, torch.empty(1, 4, 5, device=dev),
                                                torch.empty(1, 4, 5, device=dev), -3.0, 10 / 3,
                                                None))
    torch.library.opcheck(ops["decode_segmentation"],
                          (rgb, torch.rand(7, 3, device=dev) * 255,
                           torch.empty(1, 4, 5, dtype=torch.int64, device=dev), None, 400.0, 255))
    assert hasattr(torch.ops, f"vbkernels_{backend}")


# --------------------------------------------------------------------------------------
# cuda: the uint8 fast path (4 pixels per thread, word loads, vector stores)
# --------------------------------------------------------------------------------------

def test_packed_u8_path_is_chosen_for_contiguous_aligned_views_only():
    from vbkernels.cuda._lib import packed_u8_path

    rgb = torch.zeros((2, 6, 10, 3), dtype=torch.uint8)
    depth, normals = torch.zeros((2, 6, 10)), torch.zeros((2, 6, 10, 3))
    assert packed_u8_path(rgb, depth, None) and packed_u8_path(rgb, normals, depth)
    flat = torch.zeros(rgb.numel() + 4, dtype=torch.uint8)
    chw = torch.zeros((2, 3, 6, 10), dtype=torch.uint8).movedim(1, -1)
    not_packed = [
        (chw, depth),  # channels-first memory
        (flat[1:1 + rgb.numel()].view(rgb.shape), depth),  # one byte off a word boundary
        (rgb[:, :, :9], depth[:, :, :9]),  # cropped rows: not contiguous
        (rgb.float(), depth),  # not uint8
        (rgb, depth.double()),  # float64 output
        (rgb, torch.zeros((2, 10, 6)).transpose(1, 2)),  # strided output
        (rgb, torch.zeros(depth.numel() + 1)[1:].view(depth.shape)),  # output off 16 bytes
    ]
    for image, out in not_packed:
        assert not packed_u8_path(image, out), (image.shape, image.stride(), out.stride())
    # Labels: any label dtype when asked for, aligned to a vector of 4 of them.
    for dt in LABEL_DTYPES:
        flat_labels = torch.zeros(2 * 60 + 8, dtype=dt)
        views = {k: flat_labels[k:k + 120].view(2, 6, 10) for k in (0, 1, 2, 4)}
        starting_at = views.__getitem__

        assert not packed_u8_path(rgb, starting_at(0))  # float32 outputs only by default
        assert packed_u8_path(rgb, starting_at(0), depth, dtypes=(torch.float32, *LABEL_DTYPES))
        assert packed_u8_path(rgb, starting_at(4), dtypes=LABEL_DTYPES)  # one vector in
        assert not packed_u8_path(rgb, starting_at(1), dtypes=LABEL_DTYPES)
        # Two labels in: 16 bytes, a whole vector only for int64.
        assert packed_u8_path(rgb, starting_at(2), dtypes=LABEL_DTYPES) == (dt == torch.int64)


def _ptx_entry(ptx: str, name: str) -> str:
    start = ptx.index(f".entry {name}(")
    return ptx[start:ptx.index("\n}\n", start)]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_packed_u8_kernels_load_words_and_store_vectors_in_ptx(tmp_path):
    """The structure of the fast kernels, for sm_90, without a GPU: 32-bit pixel loads (bytes
    only in the tail), 16-byte stores, and no log/exp in the depth kernel (a table gather)."""
    from vbkernels.cuda._lib import flattened_source

    kernels = {"depth.cu": "walk_table_u8x4_f32", "normals.cu": "decode_normals_u8x4_f32",
               "segmentation.cu": "decode_segmentation_u8x4_i32"}

    def ptx_of(name: str) -> str:
        source = tmp_path / name
        source.write_text(flattened_source(name, CSRC))
        out = tmp_path / f"{name}.ptx"
        command = ["nvcc", "-std=c++17", "--fmad=false", "-ptx", "-arch=sm_90", str(source),
                   "-o", str(out)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        return _ptx_entry(out.read_text(), kernels[name])

    with ThreadPoolExecutor(2) as pool:
        bodies = dict(zip(kernels, pool.map(ptx_of, kernels)))
    for name, body in bodies.items():
        assert "ld.global.u32" in body, name  # (ld.global.nc.u32 would do as well)
        assert "st.global.v4.f32" in body, name  # float32 outputs / distances
    assert "st.global.v4.u32" in bodies["segmentation.cu"]  # 4 int32 labels at once
    assert "lg2" not in bodies["depth.cu"] and "ex2" not in bodies["depth.cu"]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_colormap_kernels_round_as_the_reference_in_ptx(tmp_path):
    """decode_colormap for sm_90: correctly rounded divisions and square roots in the work
    type (float64 for uint8 and float64 images), and no FMA, so t = start + s * span rounds
    twice as the reference does (uint8 results must be bit-identical)."""
    from vbkernels.cuda._lib import NVRTC_OPTIONS, flattened_source

    source = tmp_path / "colormap.cu"
    source.write_text(flattened_source("colormap.cu", CSRC))
    out = tmp_path / "colormap.ptx"
    done = subprocess.run(["nvcc", *NVRTC_OPTIONS, "-ptx", "-arch=sm_90", str(source), "-o",
                           str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    ptx = out.read_text()
    for suffix, work in [("u8", "f64"), ("f64", "f64"), ("f32", "f32"), ("f16", "f32"),
                         ("bf16", "f32")]:
        body = _ptx_entry(ptx, f"decode_colormap_{suffix}")
        assert "fma." not in body, suffix
        assert f"div.rn.{work}" in body and f"sqrt.rn.{work}" in body, suffix
        assert "div.approx" not in body and "div.full" not in body, suffix


def test_cuda_colormap_launcher_arguments_match_the_kernel(monkeypatch):
    """Without a GPU nothing launches the cuda op, so check what it would pass: one argument
    per kernel parameter, each of the parameter's C type (pointers as 64-bit addresses)."""
    import re

    import numpy as np

    from vbkernels.cuda import colormap as cuda_colormap

    text = (CSRC / "colormap.cu").read_text()
    params = re.search(r"decode_colormap_##TN\(([^)]*)\)", text).group(1)
    params = [" ".join(p.replace("\\", " ").split()) for p in params.split(",")]
    c_types = {"i64": np.int64, "int": np.int32, "float": np.float32}
    expected = [np.uint64 if "*" in p else c_types[p.split()[0]] for p in params]
    calls = []
    monkeypatch.setattr(cuda_colormap, "launch", lambda *a, **k: calls.append(a))
    rgb = torch.zeros((2, 3, 4, 3), dtype=torch.uint8)
    colours = torch.zeros((5, 3), dtype=torch.float64)
    positions = torch.zeros(5, dtype=torch.float64)
    for distance, max_distance in [(torch.zeros(2, 3, 4), 5.0), (None, None)]:
        cuda_colormap.decode_colormap(rgb, colours, positions, torch.zeros(2, 3, 4), distance,
                                      max_distance)
    for family, name, _, pixels, args in calls:
        assert (family, name, pixels) == ("colormap", "decode_colormap_u8", 24)
        assert [type(a) for a in args] == expected, params


_COLORMAP_HOST_MAIN = r"""
#include <cstdio>
#include <vector>
// stdin: int32 M, P, has_max; float32 max_distance; float64 colours[3M], positions[M];
// uint8 pixels[3P]. stdout: float32 t[P], distance[P].
int main() {
    int head[3];
    float max_distance;
    if (fread(head, 4, 3, stdin) != 3 || fread(&max_distance, 4, 1, stdin) != 1) return 1;
    const int M = head[0], P = head[1];
    std::vector<double> colours(3 * M), positions(M);
    std::vector<unsigned char> rgb(3 * (size_t)P);
    std::vector<float> t(P), distance(P);
    if (fread(colours.data(), 8, 3 * M, stdin) != (size_t)(3 * M)) return 1;
    if (fread(positions.data(), 8, M, stdin) != (size_t)M) return 1;
    if (fread(rgb.data(), 1, 3 * (size_t)P, stdin) != 3 * (size_t)P) return 1;
    for (int i = 0; i < P; ++i)
        colormap_pixel(&rgb[3 * (size_t)i], 1, colours.data(), positions.data(), M, head[2],
                       max_distance, &t[i], &distance[i]);
    fwrite(t.data(), 4, P, stdout);
    fwrite(distance.data(), 4, P, stdout);
    return 0;
}
"""


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_colormap_pixel_math_on_the_host_is_the_reference(tmp_path):
    """csrc/colormap.cu's per-pixel code (host and device) compiled for the host by nvcc and
    run on uint8 pixels of turbo: t and distance bit-identical to the torch reference, which
    a machine without a GPU can check nowhere else."""
    import numpy as np

    from vbkernels.colormap import encode_colormap
    from vbkernels.colormaps import colormap_table, polyline
    from vbkernels.cuda._lib import NVRTC_OPTIONS, flattened_source
    from vbkernels.reference.colormap import decode_colormap

    source = tmp_path / "colormap_host.cu"
    source.write_text(flattened_source("colormap.cu", CSRC) + _COLORMAP_HOST_MAIN)
    binary = tmp_path / "colormap_host"
    done = subprocess.run(["nvcc", *NVRTC_OPTIONS, "-arch=sm_90", str(source), "-o",
                           str(binary)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    colours, positions = polyline(colormap_table("turbo"))
    gen = torch.Generator().manual_seed(21)
    rgb = torch.randint(0, 256, (1, 1, 20000, 3), generator=gen, dtype=torch.uint8)
    painted = encode_colormap(torch.linspace(0, 1, 300), "turbo")
    rgb[0, 0, :300] = painted
    rgb[0, 0, 300:599] = ((painted[:-1].int() + painted[1:].int() + 1) // 2).to(torch.uint8)
    max_distance = 30.0
    head = np.array([len(colours), rgb.shape[2], 1], dtype=np.int32).tobytes()
    stdin = (head + np.float32(max_distance).tobytes() + colours.tobytes()
             + positions.tobytes() + rgb.numpy().tobytes())
    run = subprocess.run([str(binary)], input=stdin, capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = torch.from_numpy(np.frombuffer(run.stdout, dtype=np.float32).copy()).view(2, 1, 1, -1)
    t, dist = torch.empty(rgb.shape[:3]), torch.empty(rgb.shape[:3])
    decode_colormap(rgb, torch.from_numpy(colours), torch.from_numpy(positions), t, dist,
                    max_distance)
    assert t.isnan().any() and not t.isnan().all()
    _same(out[0], t)
    _same(out[1], dist)


@pytest.mark.skipif(not CUDA, reason="needs CuPy and a CUDA device")
def test_cuda_packed_u8_path_matches_the_reference():
    from vbkernels.cuda._lib import packed_u8_path

    gen = torch.Generator().manual_seed(7)
    rgb = torch.randint(0, 256, (2, 5, 7, 3), generator=gen, dtype=torch.uint8)  # 70 px: a tail
    rgb[0, 0, :4] = torch.tensor([[141, 114, 46], [127, 128, 128], [255, 255, 255], [0, 0, 0]])
    dev = rgb.cuda()
    shape = rgb.shape[:3]
    t, depth, dist = (torch.empty(shape, device="cuda") for _ in range(3))
    normals, norm = torch.empty(rgb.shape, device="cuda"), torch.empty(shape, device="cuda")
    assert packed_u8_path(dev, depth, dist) and packed_u8_path(dev, normals, norm)
    _ops("cuda")["hilbert_project"](dev, t)
    _ops("cuda")["decode_depth"](dev, depth, dist, -3.0, 10 / 3, None)
    t_ref, depth_ref, dist_ref = (torch.empty(shape) for _ in range(3))
    REF["hilbert_project"](rgb, t_ref)
    REF["decode_depth"](rgb, depth_ref, dist_ref, -3.0, 10 / 3, None)
    _same(t, t_ref)
    _same(depth, depth_ref)  # the table is the reference's own output
    _assert_correctly_rounded_sqrt_of_integers(dist.cpu())
    for flip in (False, True):
        _ops("cuda")["decode_normals"](dev, normals, norm, flip, 1e-6)
        _close_to_float64_normals(rgb, normals.cpu(), norm.cpu(), flip)
    palette = _tie_palette()
    for label_dtype in LABEL_DTYPES:
        labels = torch.empty(shape, dtype=label_dtype, device="cuda")
        labels_ref = torch.empty(shape, dtype=label_dtype)
        assert packed_u8_path(dev, labels, dist, dtypes=(torch.float32, *LABEL_DTYPES))
        _ops("cuda")["decode_segmentation"](dev, palette.cuda(), labels, dist, 900.0, 255)
        REF["decode_segmentation"](rgb, palette, labels_ref, dist_ref, 900.0, 255)
        _same(labels, labels_ref)
        _assert_correctly_rounded_sqrt_of_integers(dist.cpu())
