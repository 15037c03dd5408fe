"""The Triton ``decode_colormap`` kernels against the torch reference (contract in
``vbkernels/reference/colormap.py``; docs/format.md, Colormaps).

Runs on CPU tensors through the Triton interpreter (CI) and on CUDA tensors with a GPU.
uint8 images must give bit-identical ``t`` and distance on the direct path and on the
2^24-entry table path; float images within a few ulps. The interpreter pays per segment
per program, so most tests use short polylines and one test uses a whole built-in map on a
single 128-pixel program.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

from tests.conftest import random_rgb
from tests.helpers import compile_for_sm90, triton_devices
from vbkernels._dispatch import load_backend
from vbkernels.colormap import encode_colormap
from vbkernels.colormaps import colormap_table, polyline
from vbkernels.reference import colormap as ref

triton = pytest.importorskip("triton")
tcm = pytest.importorskip("vbkernels.triton.colormap")


DEVICES = triton_devices()
INTERPRETED = "cpu" in DEVICES


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def _polyline(colours, device="cpu"):
    """Vertices and positions of an (N, 3) uint8 colour array, as the front end builds them."""
    v, pos = polyline(colormap_table(np.asarray(colours, dtype=np.uint8)))
    return torch.from_numpy(v).to(device), torch.from_numpy(pos).to(device)


def _short_map(seed: int, n: int = 7) -> np.ndarray:
    """A short random map whose segments cross (many near and exact ties)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3)).astype(np.uint8)


# An L-shaped map: pixel (90, 10, 0) is exactly 10 from segment 0 and from segment 1, so
# the tie must go to segment 0 (t = 0.9 of the way along it, not 0.1 along segment 1).
L_MAP = np.array([[0, 0, 0], [100, 0, 0], [100, 100, 0]], dtype=np.uint8)


def _view(base: torch.Tensor, layout: str) -> torch.Tensor:
    """(N, H, W, 3) view of a contiguous ``base`` in a memory layout."""
    if layout == "hwc":
        return base
    if layout == "chw":
        return base.permute(0, 3, 1, 2).contiguous().movedim(1, -1)
    n, h, w, _ = base.shape  # "slice": every other row and column of a 4-channel buffer
    big = torch.zeros((n, 2 * h, 2 * w + 1, 4), dtype=base.dtype, device=base.device)
    view = big[:, ::2, 1::2, 1:]
    view.copy_(base)
    return view


def _outputs(shape, t_dtype, device, with_distance=True):
    """Strided destinations (every other element of a NaN-poisoned buffer)."""
    def strided(dtype):
        return torch.full((*shape[:-1], 2 * shape[-1]), float("nan"), dtype=dtype,
                          device=device)[..., ::2]

    return strided(t_dtype), strided(torch.float32) if with_distance else None


def _run(fn, rgb, colours, positions, max_distance=None, with_distance=True):
    t_dtype = torch.float64 if rgb.dtype == torch.float64 else torch.float32
    t, dist = _outputs(rgb.shape[:3], t_dtype, rgb.device, with_distance)
    fn(rgb, colours, positions, t, dist, max_distance)
    return t.cpu(), None if dist is None else dist.cpu()


def _reference(rgb, colours, positions, max_distance=None, with_distance=True):
    return _run(ref.decode_colormap, rgb.cpu(), colours.cpu(), positions.cpu(), max_distance,
                with_distance)


def _op(device):
    return load_backend("triton").ops["decode_colormap"]


def _same(a, b):
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


def _with_pixels(rgb: torch.Tensor, pixels) -> torch.Tensor:
    flat = rgb.reshape(-1, 3)
    pixels = torch.as_tensor(np.asarray(pixels), dtype=torch.uint8)
    flat[: len(pixels)] = pixels
    return rgb


# --- uint8: exact ---------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["hwc", "chw", "slice"])
def test_uint8_random_colours_exact(device, layout):
    colours, positions = _polyline(_short_map(1), device)
    base = random_rgb((2, 3, 131, 3), torch.uint8, seed=2)  # 131: a row spans two programs
    rgb = _view(base.to(device), layout)
    for max_distance, with_distance in [(None, True), (40.0, True), (40.0, False)]:
        got = _run(_op(device), rgb, colours, positions, max_distance, with_distance)
        want = _reference(base, colours, positions, max_distance, with_distance)
        _same(got[0], want[0])
        if with_distance:
            _same(got[1], want[1])
        if max_distance is not None:
            assert want[0].isnan().any() and not want[0].isnan().all()


def test_uint8_ties_go_to_the_lowest_segment(device):
    colours, positions = _polyline(L_MAP, device)
    rgb = _with_pixels(random_rgb((1, 1, 40, 3), torch.uint8, seed=3),
                       [[90, 10, 0], [100, 0, 0], [50, 50, 0], [100, 100, 0], [0, 0, 0]])
    t, dist = _run(_op(device), rgb.to(device), colours, positions)
    want_t, want_dist = _reference(rgb, colours, positions)
    _same(t, want_t)
    _same(dist, want_dist)
    start, end = positions[0].item(), positions[1].item()
    assert t[0, 0, 0].item() == np.float32(start + 0.9 * (end - start)) and dist[0, 0, 0] == 10


def test_single_colour_map_is_a_zero_length_segment(device):
    colours, positions = _polyline([[30, 60, 90]], device)
    assert colours.shape[0] == 2 and torch.equal(colours[0], colours[1])
    rgb = random_rgb((1, 2, 9, 3), torch.uint8, seed=4)
    got = _run(_op(device), rgb.to(device), colours, positions, 100.0)
    want = _reference(rgb, colours, positions, 100.0)
    _same(got[0], want[0])
    _same(got[1], want[1])


def test_whole_builtin_map_painted_and_random_colours_exact(device):
    """turbo's full polyline (one 128-pixel program under the interpreter): painted colours
    decode with distance 0, random and near-tie colours bit-identically."""
    colours, positions = _polyline(colormap_table("turbo").painted, device)
    painted = encode_colormap(torch.linspace(0, 1, 48), "turbo")
    rgb = random_rgb((1, 1, 128, 3), torch.uint8, seed=5)
    rgb[0, 0, :48] = painted
    # Between two painted neighbours: halfway pixels sit on near-ties between segments.
    rgb[0, 0, 48:80] = ((painted[:32].int() + painted[1:33].int() + 1) // 2).to(torch.uint8)
    got = _run(_op(device), rgb.to(device), colours, positions, 3.0)
    want = _reference(rgb, colours, positions, 3.0)
    _same(got[0], want[0])
    _same(got[1], want[1])
    assert (got[1][0, 0, :48] == 0).all()


def test_empty_batch_writes_nothing(device):
    colours, positions = _polyline(L_MAP, device)
    for shape in [(0, 4, 5, 3), (2, 0, 5, 3), (2, 4, 0, 3)]:
        rgb = torch.zeros(shape, dtype=torch.uint8, device=device)
        t = torch.empty(shape[:3], device=device)
        _op(device)(rgb, colours, positions, t, None, None)


def test_public_call_on_triton_equals_torch(device):
    """The front end over the triton op: chw layout, a value range, distances."""
    import vbkernels as vb

    colours = _short_map(13, n=9)
    rgb = random_rgb((2, 3, 5, 7), torch.uint8, seed=14).to(device)  # (N, 3, H, W)
    kwargs = dict(vmin=0.5, vmax=80.0, max_distance=50.0, return_distance=True,
                  layout="chw")
    values, dist = vb.decode_colormap(rgb, colours, backend="triton", **kwargs)
    want_values, want_dist = vb.decode_colormap(rgb.cpu(), colours, backend="torch", **kwargs)
    assert values.shape == (2, 5, 7) and values.device.type == device
    _same(values.cpu(), want_values)
    _same(dist.cpu(), want_dist)


# --- float images ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_float_images_close_to_reference(device, dtype):
    colours, positions = _polyline(_short_map(6), device)
    base = random_rgb((2, 2, 70, 3), dtype, seed=7)
    base[1, 1, 3, 1] = float("nan")
    rgb = _view(base.to(device), "chw")
    t, dist = _run(_op(device), rgb, colours, positions, 60.0)
    want_t, want_dist = _reference(base, colours, positions, 60.0)
    assert t.isnan()[1, 1, 3] and dist.isnan()[1, 1, 3]
    work = ref.colormap_work_dtype(dtype)
    eps = torch.finfo(work).eps
    # The same operations in the same order: only sqrt (torch's float32 sqrt on a CPU is not
    # always correctly rounded) and, on a GPU, the divisions' last bit may differ.
    torch.testing.assert_close(t, want_t, rtol=4 * eps, atol=4 * eps, equal_nan=True)
    torch.testing.assert_close(dist, want_dist, rtol=max(4 * eps, 2.4e-7), atol=1e-5,
                               equal_nan=True)


def test_float64_t_is_float64(device):
    colours, positions = _polyline(L_MAP, device)
    rgb = torch.tensor([[[[0.9 * 100 / 255, 0.0, 0.0]]]], dtype=torch.float64, device=device)
    t, _ = _run(_op(device), rgb, colours, positions)
    want, _ = _reference(rgb, colours, positions)
    assert t.dtype == torch.float64
    torch.testing.assert_close(t, want, rtol=1e-15, atol=1e-15)


# --- the 2^24-entry table path --------------------------------------------------------------

# A run of colour indices r<<16 | g<<8 | b: r = 200, g = 40..41, every b.
FIRST, COUNT = (200 << 16) | (40 << 8), 512


def _subset_table(colours, positions, device):
    """A table pair whose entries [FIRST, FIRST + COUNT) are built by the kernel and the
    rest are NaN, so a gather at a wrong index shows."""
    pair = tuple(torch.full((tcm.TABLE_SIZE,), float("nan"), device=device) for _ in range(2))
    return tcm.build_colour_table(colours, positions, FIRST, COUNT, pair)


def _subset_image(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    idx = FIRST + torch.randint(0, COUNT, (2, 3, 67), generator=gen)
    return torch.stack([idx >> 16, (idx >> 8) & 255, idx & 255], -1).to(torch.uint8)


def test_table_build_equals_the_direct_search(device):
    colours, positions = _polyline(_short_map(8), device)
    table = _subset_table(colours, positions, device)
    idx = torch.arange(FIRST, FIRST + COUNT)
    rgb = torch.stack([idx >> 16, (idx >> 8) & 255, idx & 255], -1).to(torch.uint8)
    want_t, want_dist = _reference(rgb.view(1, 1, -1, 3), colours, positions)
    _same(table[0][FIRST:FIRST + COUNT].cpu(), want_t.view(-1))
    _same(table[1][FIRST:FIRST + COUNT].cpu(), want_dist.view(-1))
    assert table[0][FIRST - 1].isnan() and table[1][FIRST + COUNT].isnan()


@pytest.mark.parametrize("layout", ["hwc", "slice"])
def test_table_lookup_exact(device, layout):
    colours, positions = _polyline(_short_map(9), device)
    table = _subset_table(colours, positions, device)
    base = _subset_image(10)
    rgb = _view(base.to(device), layout)
    for max_distance, with_distance in [(None, True), (90.0, True), (90.0, False)]:
        t, dist = _outputs(rgb.shape[:3], torch.float32, device, with_distance)
        tcm.lookup(rgb, table, t, dist, max_distance)
        want = _reference(base, colours, positions, max_distance, with_distance)
        _same(t.cpu(), want[0])
        if with_distance:
            _same(dist.cpu(), want[1])


def test_op_takes_the_cached_table_when_the_policy_says_so(device, monkeypatch):
    """The op's table path end to end: policy on, the polyline's table found in the cache
    by content (a copy of the polyline), results equal to the reference."""
    colours, positions = _polyline(_short_map(11), device)
    table = _subset_table(colours, positions, device)
    cache = tcm.cm.DeviceTables(kept=2)
    cache.entries.append(((colours.clone(), positions.clone()), table))
    monkeypatch.setattr(tcm, "_TABLES", cache)
    monkeypatch.setattr(tcm, "use_colour_table", lambda rgb: True)
    base = _subset_image(12)
    got = _run(_op(device), base.to(device), colours.clone(), positions.clone(), 90.0)
    want = _reference(base, colours, positions, 90.0)
    _same(got[0], want[0])
    _same(got[1], want[1])
    assert len(tcm._TABLES.entries) == 1  # found, not rebuilt


def test_table_policy():
    rgb = torch.zeros((1, 1, 1, 3), dtype=torch.uint8)
    assert not tcm.use_colour_table(rgb)  # CPU tensors (the interpreter) never
    assert tcm.TABLE_MIN_PIXELS >= 1 << 20  # a batch comparable with the 2^24 table


@pytest.mark.skipif("cuda" not in DEVICES, reason="needs a CUDA device")
@pytest.mark.cuda
def test_table_path_on_cuda_equals_direct_path():
    colours, positions = _polyline(colormap_table("turbo").painted, "cuda")
    rgb = torch.randint(0, 256, (1, 2048, 8192, 3), dtype=torch.uint8, device="cuda")
    assert tcm.use_colour_table(rgb)
    table_t, table_d = _run(_op("cuda"), rgb, colours, positions, 20.0)
    direct_t, direct_d = _run(tcm.decode_direct, rgb, colours, positions, 20.0)
    _same(table_t, direct_t)
    _same(table_d, direct_d)
    part = rgb[:, :8]
    want = _reference(part, colours, positions, 20.0)
    _same(direct_t[:, :8], want[0])
    _same(direct_d[:, :8], want[1])


# --- compiled for sm_90 without a GPU ----------------------------------------------------

_PTX_SCRIPT = textwrap.dedent("""
    import json
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from vbkernels.triton import colormap as tcm

    ROW = dict(IS_U8=True, IS_F64=False, WORK_F64=True, HAS_MAX=True, HAS_DIST=True,
               BLOCK_W=256)
    CASES = {
        "u8": (tcm._decode_colormap_kernel, {"p_rgb": "*u8", "p_t": "*fp32"}, ROW),
        "f32": (tcm._decode_colormap_kernel, {"p_rgb": "*fp32", "p_t": "*fp32"},
                {**ROW, "IS_U8": False, "WORK_F64": False}),
        "build": (tcm._build_table_kernel, {"p_t": "*fp32"}, dict(BLOCK=256)),
        "lookup": (tcm._lookup_kernel, {"p_rgb": "*u8", "p_tt": "*fp32", "p_td": "*fp32",
                   "p_t": "*fp32"}, dict(NEED_DIST=True, HAS_MAX=True, HAS_DIST=True,
                                        BLOCK_W=256)),
    }
    POINTERS = {"p_col": "*fp64", "p_pos": "*fp64", "p_dist": "*fp32"}
    SCALARS = {"max_distance": "fp32", "first": "i64"}
    ptx = {}
    for name, (fn, pointers, constexprs) in CASES.items():
        pointers = {**POINTERS, **pointers}
        sig = {n: "constexpr" if n in constexprs else pointers.get(n, SCALARS.get(n, "i32"))
               for n in fn.arg_names}
        kernel = triton.compile(ASTSource(fn, sig, constexprs),
                                target=GPUTarget("cuda", 90, 32), options=tcm.LAUNCH_OPTIONS)
        ptx[name] = kernel.asm["ptx"]
    print(json.dumps(ptx))
""")


@pytest.mark.skipif("cuda" in DEVICES, reason="on a GPU the kernels compile in every test")
def test_kernels_compile_for_sm90_with_exact_arithmetic():
    """What the interpreter cannot show: the kernels compile for sm_90 with the launch
    options the launchers pass, and the PTX has correctly rounded divisions and square
    roots and no FMA (an FMA in t = start + s * span would round once, not twice)."""
    import json

    # compile_for_sm90 turns fusion on by default: the launch options must switch it off.
    ptx = json.loads(compile_for_sm90(_PTX_SCRIPT).strip().splitlines()[-1])
    for name, text in ptx.items():
        assert "fma." not in text, name
    for name in ("u8", "build"):
        assert "div.rn.f64" in ptx[name] and "sqrt.rn.f64" in ptx[name], name
    assert "div.rn.f32" in ptx["f32"] and "sqrt.rn.f32" in ptx["f32"]
    assert "div.approx" not in ptx["f32"] and "div.full" not in ptx["f32"]
    assert ".f64" not in ptx["lookup"] and "sqrt" not in ptx["lookup"]  # a gather only
