"""The Triton uint8 fast ("quad") paths against the torch reference, and their fallbacks.

Each view is checked for the path it takes (``decode_path``/``encode_path``) before its
output is compared, so both the word-load kernels and the per-row kernels they fall back to
are exercised: contiguous (including odd widths and 1 x 1, which end in the masked tail),
offset by 1-3 bytes (unaligned words), strided, channels-first. uint8 results are compared
bit for bit with the reference; normals with float64 at 1e-6, as docs/format.md, Normals asks.
Runs under TRITON_INTERPRET=1 on CPU tensors (CI) and on CUDA tensors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests import truth
from tests.conftest import random_rgb
from tests.helpers import triton_devices
from vbkernels.reference import depth as ref_depth
from vbkernels.reference import segmentation as ref_seg

pytest.importorskip("triton")


@pytest.fixture(params=triton_devices())
def device(request):
    return request.param


def _modules():
    from vbkernels.triton import depth, normals, segmentation

    return depth, normals, segmentation


# (name, shape, path): every view of an (N, H, W, 3) uint8 batch the tests use.
VIEWS = [
    ("contiguous", (2, 3, 67), "quad"),  # 402 pixels: full blocks and a masked tail
    ("contiguous", (1, 1, 1), "quad"),  # the tail only
    ("contiguous", (1, 3, 7), "quad"),  # odd width
    ("offset1", (1, 5, 33), "rows"),
    ("offset2", (1, 5, 33), "rows"),
    ("offset3", (1, 5, 33), "rows"),
    ("offset4", (1, 5, 33), "quad"),  # aligned again
    ("strided", (2, 3, 41), "rows"),
    ("chw", (2, 3, 41), "rows"),
]
VIEW_IDS = [f"{name}-{'x'.join(map(str, shape))}" for name, shape, _ in VIEWS]


def make_view(base: torch.Tensor, name: str) -> torch.Tensor:
    """``base`` (contiguous (N, H, W, 3) uint8) laid out as ``name``, same values."""
    if name == "contiguous":
        return base
    if name.startswith("offset"):
        offset = int(name[len("offset"):])
        flat = torch.zeros(base.numel() + 8, dtype=base.dtype, device=base.device)
        view = flat[offset:offset + base.numel()].view(base.shape)
        view.copy_(base)
        return view
    if name == "strided":
        big = torch.zeros(base.shape[:2] + (2 * base.shape[2], 4), dtype=base.dtype,
                          device=base.device)
        view = big[:, :, ::2, 1:]
        view.copy_(base)
        return view
    if name == "chw":
        return base.permute(0, 3, 1, 2).contiguous().movedim(1, -1)
    raise AssertionError(name)


def grey_and_random(shape, seed) -> torch.Tensor:
    """Random uint8 colours whose first pixels are the near-grey ones (every mix of 127 and
    128, the colours where float32 2p/255 - 1 loses most) and the walk's vertices."""
    rgb = random_rgb(shape + (3,), torch.uint8, seed=seed)
    special = [[a, b, c] for a in (127, 128) for b in (127, 128) for c in (127, 128)]
    special += [[255 * (v >> 2 & 1), 255 * (v >> 1 & 1), 255 * (v & 1)] for v in range(8)]
    flat = rgb.view(-1, 3)
    m = min(len(special), flat.shape[0])
    flat[:m] = torch.tensor(special[:m], dtype=torch.uint8)
    return rgb


# --- depth and hilbert_project ---------------------------------------------------------

@pytest.mark.parametrize("name,shape,path", VIEWS, ids=VIEW_IDS)
def test_uint8_depth_and_t_are_the_reference_bits(device, name, shape, path):
    depth_mod, _, _ = _modules()
    base = grey_and_random(shape, seed=20)
    rgb = make_view(base.to(device), name)
    depth = torch.full(shape, float("nan"), device=device)
    dist = torch.full(shape, float("nan"), device=device)
    t = torch.full(shape, float("nan"), device=device)
    assert depth_mod.decode_path(rgb, depth, dist) == path
    depth_mod.decode_depth(rgb, depth, dist, -2.5, 1.5, 40.0)
    depth_mod.hilbert_project(rgb, t)
    want, want_dist, want_t = (torch.empty(shape, device=device) for _ in range(3))
    ref_depth.decode_depth(rgb, want, want_dist, -2.5, 1.5, 40.0)
    ref_depth.hilbert_project(rgb, want_t)
    assert torch.equal(depth, want)
    assert torch.equal(t, want_t)
    torch.testing.assert_close(dist, want_dist, rtol=1e-6, atol=0)


def test_uint8_depth_into_float64_is_the_reference_bits(device):
    depth_mod, _, _ = _modules()
    rgb = grey_and_random((1, 2, 70), seed=21).to(device)
    rgb.view(-1, 3)[-1] = 255  # white: +inf
    got = torch.empty(rgb.shape[:3], dtype=torch.float64, device=device)
    want = torch.empty_like(got)
    assert depth_mod.decode_path(rgb, got, None) == "quad"
    depth_mod.decode_depth(rgb, got, None, -3.0, 10 / 3, None)
    ref_depth.decode_depth(rgb, want, None, -3.0, 10 / 3, None)
    assert torch.equal(got, want) and got.view(-1)[-1] == math.inf


def test_float64_depth_into_float64(device):
    """Float input keeps the arithmetic path; a float64 output gets float64 values."""
    depth_mod, _, _ = _modules()
    rgb = random_rgb((1, 2, 40, 3), torch.float64, seed=22).to(device)
    got = torch.empty(rgb.shape[:3], dtype=torch.float64, device=device)
    assert depth_mod.decode_path(rgb, got, None) == "rows"
    depth_mod.decode_depth(rgb, got, None, -3.0, 10 / 3, None)
    t_true, _, _ = truth.project(rgb.cpu().numpy())
    clear = truth.tie_margin(rgb.cpu().numpy()).reshape(-1) > 1e-2
    want = truth.depth_from_t(t_true)
    np.testing.assert_allclose(got.cpu().numpy().reshape(-1)[clear], want[clear], rtol=1e-5)


def test_walk_tables_are_cached_per_arguments(device):
    depth_mod, _, _ = _modules()
    a = depth_mod.walk_table("depth", -3.0, 10 / 3, torch.float32, torch.device(device))
    assert a is depth_mod.walk_table("depth", -3.0, 10 / 3, torch.float32, torch.device(device))
    b = depth_mod.walk_table("depth", -2.0, 10 / 3, torch.float32, torch.device(device))
    assert a.shape == (7 * 256,) and not torch.equal(a, b)


# --- normals ----------------------------------------------------------------------------

@pytest.mark.parametrize("name,shape,path", VIEWS[:2] + VIEWS[3:4] + VIEWS[7:], ids=str)
@pytest.mark.parametrize("out_dtype,flip", [(torch.float32, False), (torch.float16, True)])
def test_uint8_normals_within_1e6_of_float64(device, name, shape, path, out_dtype, flip):
    _, normals_mod, _ = _modules()
    base = grey_and_random(shape, seed=23)
    rgb = make_view(base.to(device), name)
    normals = torch.full(shape + (3,), float("nan"), dtype=out_dtype, device=device)
    norm = torch.full(shape, float("nan"), device=device)
    assert normals_mod.decode_path(rgb, normals, norm) == path
    normals_mod.decode_normals(rgb, normals, norm, flip, 1e-6)
    want, want_norm = truth.normals(base.numpy(), flip_yz=flip)
    tol = 1e-6 if out_dtype == torch.float32 else float(torch.finfo(out_dtype).eps)
    np.testing.assert_allclose(normals.cpu().double().numpy(), want, rtol=0, atol=tol)
    np.testing.assert_allclose(norm.cpu().double().numpy(), want_norm, rtol=1e-6, atol=0)


def test_normals_formula_meets_1e6_for_every_uint8_colour():
    """The kernel's uint8 normal is X * rsqrt(S) in float32, X = 2p - 255 and S = |X|^2
    exact. With rsqrt at PTX's worst relative error (2^-22.9, rsqrt.approx.f32) in either
    direction, every one of the 2^24 colours is within 1e-6 of float64 (its worst case is
    printed by ``pytest -s``)."""
    x = 2 * np.arange(256, dtype=np.int64) - 255
    worst = 0.0
    for r in range(256):
        xr = np.full((256, 256), x[r])
        xg, xb = np.meshgrid(x, x, indexing="ij")
        s = xr * xr + xg * xg + xb * xb
        exact = 1.0 / np.sqrt(s.astype(np.float64))
        for rel in (-(2.0 ** -22.9), 2.0 ** -22.9):
            inv = (exact * (1.0 + rel)).astype(np.float32)
            for comp in (xr, xg, xb):
                got = comp.astype(np.float32) * inv  # float32 product, one rounding
                worst = max(worst, float(np.abs(got.astype(np.float64) - comp * exact).max()))
    print("worst |error| over 2^24 colours:", worst)
    assert worst < 1e-6


# --- segmentation -----------------------------------------------------------------------

def _palette(k: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    palette = torch.randint(0, 256, (k, 3), generator=gen).float()
    if k > 2:
        palette[2] = palette[1]  # a duplicate colour: ties go to the lower index
    return palette


@pytest.mark.parametrize("name,shape,path", VIEWS[:3] + VIEWS[4:5] + VIEWS[8:], ids=str)
@pytest.mark.parametrize("k,label_dtype", [(1, torch.int64), (19, torch.uint8)])
def test_uint8_segmentation_scan_is_the_reference(device, name, shape, path, k, label_dtype):
    _, _, seg = _modules()
    palette = _palette(k, seed=24)
    base = random_rgb(shape + (3,), torch.uint8, seed=25)
    hits = min(k, base.numel() // 3)
    base.view(-1, 3)[:hits] = palette[:hits].to(torch.uint8)  # exact hits and the duplicate
    rgb = make_view(base.to(device), name)
    labels = torch.full(shape, 77, dtype=label_dtype, device=device)
    dist = torch.full(shape, float("nan"), device=device)
    assert seg.decode_path(rgb, labels, dist) == path
    seg.decode_segmentation(rgb, palette.to(device), labels, dist, 2500.0, 255)
    want = torch.empty(shape, dtype=label_dtype)
    want_dist = torch.empty(shape)
    ref_seg.decode_segmentation(base, palette, want, want_dist, 2500.0, 255)
    assert torch.equal(labels.cpu(), want)
    torch.testing.assert_close(dist.cpu(), want_dist, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 67), (1, 1, 3)], ids=str)
def test_uint8_segmentation_table_quads(device, shape):
    """The quad kernel's table gather (the path CUDA takes for large palettes), with a
    table filled for the colours present from the reference's nearest colours."""
    _, _, seg = _modules()
    palette = _palette(150, seed=26)
    base = random_rgb(shape + (3,), torch.uint8, seed=27)
    p = base.view(-1, 3).long()
    index = (p[:, 0] << 16) | (p[:, 1] << 8) | p[:, 2]
    nearest, _ = ref_seg.nearest_palette(p.float(), palette)
    table = torch.zeros(1 << 24, dtype=torch.uint8)
    table[index] = nearest.to(torch.uint8)
    labels = torch.empty(shape, dtype=torch.int16, device=device)
    dist = torch.empty(shape, device=device)
    rgb = base.to(device)
    assert seg.decode_path(rgb, labels, dist) == "quad"
    seg._decode_quads(rgb, palette.to(device), table.to(device), labels, dist, 900.0, 255)
    want = torch.empty(shape, dtype=torch.int16)
    want_dist = torch.empty(shape)
    ref_seg.decode_segmentation(base, palette, want, want_dist, 900.0, 255)
    assert torch.equal(labels.cpu(), want)
    torch.testing.assert_close(dist.cpu(), want_dist, rtol=1e-6, atol=1e-5)


# --- encoders ---------------------------------------------------------------------------

def _encode_inputs(thresholds: torch.Tensor, seed: int) -> torch.Tensor:
    """Every 5th threshold and its float32 neighbours, random depths, and the edge values."""
    th = thresholds[1:7 * 255 + 1:5].cpu()
    below = torch.nextafter(th, torch.tensor(-1.0))
    above = torch.nextafter(th, torch.tensor(math.inf))
    gen = torch.Generator().manual_seed(seed)
    rand = torch.rand(200, generator=gen) ** 3 * 400
    edges = torch.tensor([0.0, 1e-30, math.inf, 1e9, 412.0, 412.5, 1e4])
    return torch.cat([edges, th, below, above, rand]).float()


@pytest.mark.parametrize("kind", ["depth", "t"])
def test_uint8_encoders_are_the_reference_bytes(device, kind):
    depth_mod, _, _ = _modules()
    lam, c = (-2.5, 1.5) if kind == "depth" else (0.0, 0.0)
    thresholds, _ = depth_mod.encode_thresholds(kind, lam, c, torch.device(device))
    x = _encode_inputs(thresholds, seed=28)
    if kind == "t":
        x = torch.cat([x.clamp_max(1.0), torch.tensor([1.0, 1 - 2.0 ** -24, 0.5, 2.0, -1.0])])
    x = x[: x.numel() - x.numel() % 3].reshape(1, 3, -1)  # flat, width not a multiple of 4
    want = torch.empty(x.shape + (3,), dtype=torch.uint8)
    if kind == "depth":
        ref_depth.encode_depth(x, want, lam, c)
    else:
        ref_depth.hilbert_walk(x, want)
    for layout, path in (("contiguous", "quad"), ("offset1", "rows")):
        rgb = make_view(torch.zeros_like(want, device=device), layout)
        assert depth_mod.encode_path(x, rgb) == path
        if kind == "depth":
            depth_mod.encode_depth(x.to(device), rgb, lam, c)
        else:
            depth_mod.hilbert_walk(x.to(device), rgb)
        if path == "quad":
            assert torch.equal(rgb.cpu(), want)
        else:  # the float64 formula: at most one step off on a rounding boundary
            assert (rgb.cpu().int() - want.int()).abs().max() <= 1


def test_encoders_stay_off_white_for_finite_depth(device):
    """Finite depth is not white where float64 can tell: t = 1 - (1 + d/(-lam c))^(lam+1)
    for d = 1e9 is 1 - 1e-16 < 1, so the walk point's last channel stays below 1."""
    depth_mod, _, _ = _modules()
    depth = torch.tensor([[[1e9, 1e12, math.inf]]], dtype=torch.float64, device=device)
    rgb = torch.empty(depth.shape + (3,), dtype=torch.float64, device=device)
    depth_mod.encode_depth(depth, rgb, -3.0, 10 / 3)
    assert rgb[0, 0, 0, 1] < 1.0  # segment 6: G rises towards white
    assert torch.equal(rgb[0, 0, 2].cpu(), torch.ones(3, dtype=torch.float64))
    t = torch.tensor([[[1 - 2.0 ** -53, 1.0]]], dtype=torch.float64, device=device)
    walk = torch.empty(t.shape + (3,), dtype=torch.float64, device=device)
    depth_mod.hilbert_walk(t, walk)
    assert walk[0, 0, 0, 1] < 1.0 and torch.equal(walk[0, 0, 1].cpu(), torch.ones(3).double())


@pytest.mark.cuda
@pytest.mark.skipif("cuda" not in triton_devices(), reason="needs a CUDA device")
def test_cuda_graph_capture_records_the_table_builds():
    """A first call inside CUDA graph capture records the table build into the graph (its
    values exist only on replay), so the table must not be cached for eager calls."""
    depth_mod, _, _ = _modules()
    rgb = random_rgb((1, 64, 96, 3), torch.uint8, seed=29, device="cuda")
    depth = torch.empty(rgb.shape[:3], device="cuda")
    depth_mod.decode_depth(rgb, depth, None, -2.0, 1.0, None)  # compiles outside capture
    depth_mod._WALK_TABLES.clear()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        depth_mod.decode_depth(rgb, depth, None, -3.0, 10 / 3, None)
    assert not depth_mod._WALK_TABLES
    depth.fill_(float("nan"))
    graph.replay()
    want = torch.empty_like(depth)
    ref_depth.decode_depth(rgb, want, None, -3.0, 10 / 3, None)
    assert torch.equal(depth, want)
