"""The Triton kernels against the torch reference, op by op.

Runs on CPU tensors through the Triton interpreter (CI) and on CUDA tensors when a GPU is
present: same tests, ``device`` parameter. Kernel ops are called directly with
destination views cut out of larger poisoned buffers, so a pixel the kernel forgets stays
poisoned and a store past the end of a row lands in a guard column that must stay intact.
uint8 segment choices and labels are compared exactly; floats within docs/format.md, Precision.
"""

from __future__ import annotations

import functools
import math
import textwrap

import numpy as np
import pytest
import torch

import vbkernels as vb
from tests import truth
from tests.conftest import random_rgb, tie_pixels
from tests.helpers import assert_depth_close, compile_for_sm90
from vbkernels._dispatch import BackendUnavailable, load_backend, select
from vbkernels.reference import depth as ref_depth
from vbkernels.reference import normals as ref_normals
from vbkernels.reference import segmentation as ref_seg

triton = pytest.importorskip("triton")
tl = triton.language
cm = pytest.importorskip("vbkernels.triton._common")


def _triton_devices() -> list[str]:
    try:
        backend = load_backend("triton")
    except BackendUnavailable:
        return []
    return [dev for dev in ("cpu", "cuda") if dev in backend.devices]


DEVICES = _triton_devices()
needs_cuda = pytest.mark.skipif("cuda" not in DEVICES, reason="needs a CUDA device")


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture(scope="module")
def ops():
    return load_backend("triton").ops


# --- inputs and guarded outputs ---------------------------------------------------------

LAYOUTS = ["hwc", "chw", "slice", "channels_last", "expand"]


def image_view(base: torch.Tensor, layout: str) -> torch.Tensor:
    """The (N, H, W, 3) kernel view of ``base`` (contiguous (N, H, W, 3)) in a layout."""
    n, h, w, _ = base.shape
    if layout == "hwc":
        return base
    if layout == "chw":
        return base.permute(0, 3, 1, 2).contiguous().movedim(1, -1)
    if layout == "slice":
        # Every other row, every third column, channels 1..3 of a 4-channel buffer.
        big = torch.zeros((n, 2 * h + 1, 3 * w + 2, 4), dtype=base.dtype, device=base.device)
        view = big[:, 1::2, 2::3, 1:]
        view.copy_(base)
        return view
    if layout == "channels_last":
        nchw = base.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        return nchw.movedim(1, -1)
    if layout == "expand":
        # Stride 0 over the batch: every image is the first one.
        return base[:1].expand(n, h, w, 3)
    raise AssertionError(layout)


def poison_value(dtype: torch.dtype):
    return float("nan") if dtype.is_floating_point else 123


class Guarded:
    """An output view with one poisoned guard column on each side of every row."""

    def __init__(self, shape, dtype, device):
        n, h, w = shape[:3]
        self.big = torch.full((n, h, w + 2) + tuple(shape[3:]), poison_value(dtype),
                              dtype=dtype, device=device)
        self.view = self.big[:, :, 1:w + 1]

    def check_guards(self):
        guards = torch.cat([self.big[:, :, :1], self.big[:, :, -1:]], dim=2)
        poison = torch.full_like(guards, poison_value(guards.dtype))
        assert torch.equal(guards.isnan(), poison.isnan()) if guards.is_floating_point() else \
            torch.equal(guards, poison), "a kernel wrote outside its view"


def guarded_pair(shape, dtype, device):
    return Guarded(shape, dtype, device), Guarded(shape, dtype, "cpu")


@functools.lru_cache(maxsize=1)
def cached_tie_pixels() -> np.ndarray:
    return tie_pixels()  # a scan of 86^3 colours: computed once per session


def with_tie_colours(shape, seed, device) -> torch.Tensor:
    """Random uint8 image whose first pixels are the tie colours of docs/format.md, Depth (and
    exact ties)."""
    rgb = random_rgb(shape, torch.uint8, seed=seed)
    ties = torch.from_numpy(cached_tie_pixels())
    flat = rgb.view(-1, 3)
    m = min(len(ties), flat.shape[0])
    flat[:m] = ties[:m]
    return rgb.to(device)


# --- depth ------------------------------------------------------------------------------

SHAPES = [(1, 1, 1), (3, 7, 13), (2, 3, 131)]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_project_uint8_picks_the_reference_segment(device, ops, layout):
    shape = (2, 3, 131)  # 131 > the interpreter's 128-pixel block: two blocks per row
    base = with_tie_colours(shape + (3,), seed=1, device="cpu")
    rgb = image_view(base.to(device), layout)
    t, t_ref = guarded_pair(shape, torch.float32, device)
    ops["hilbert_project"](rgb, t.view)
    ref_depth.hilbert_project(image_view(base, layout), t_ref.view)
    t.check_guards()
    # A different segment moves t by far more than 1e-6 except at shared vertices.
    torch.testing.assert_close(t.view.cpu(), t_ref.view, atol=1e-6, rtol=0)


def test_every_exact_tie_goes_to_the_lowest_segment(device, ops):
    colours = cached_tie_pixels()
    rgb = torch.from_numpy(colours).reshape(1, 1, -1, 3).to(device)
    t = torch.full(rgb.shape[:3], float("nan"), device=device)
    dist = torch.full(rgb.shape[:3], float("nan"), device=device)
    ops["decode_depth"](rgb, torch.empty_like(t), dist, -3.0, 10 / 3, None)
    ops["hilbert_project"](rgb, t)
    t_true, _, d2_true = truth.project(colours)
    np.testing.assert_allclose(t.cpu().numpy().ravel(), t_true, atol=1e-6, rtol=0)
    np.testing.assert_allclose(dist.cpu().numpy().ravel(), np.sqrt(d2_true), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES + [(0, 4, 4), (2, 0, 5)], ids=str)
@pytest.mark.parametrize("lam,c,max_depth", [(-3.0, 10 / 3, None), (-1.5, 2.0, 5.0)])
def test_decode_depth_uint8_vs_float64(device, ops, shape, lam, c, max_depth):
    rgb = with_tie_colours(shape + (3,), seed=2, device=device)
    if rgb.numel():
        rgb.view(-1, 3)[-1] = 255  # white: t = 1, depth +inf (or max_depth)
    depth, _ = guarded_pair(shape, torch.float32, device)
    dist, _ = guarded_pair(shape, torch.float32, device)
    ops["decode_depth"](rgb, depth.view, dist.view, lam, c, max_depth)
    depth.check_guards()
    dist.check_guards()
    t_true, _, d2_true = truth.project(rgb.cpu().numpy())
    want = truth.depth_from_t(t_true, lam, c)
    if max_depth is not None:
        want = np.minimum(want, max_depth)
    assert_depth_close(depth.view.reshape(-1), torch.from_numpy(want))
    np.testing.assert_allclose(dist.view.cpu().numpy().ravel(), np.sqrt(d2_true), rtol=1e-6,
                               atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["hwc", "chw"])
def test_decode_depth_float_vs_reference(device, ops, dtype, layout):
    shape = (1, 2, 131)
    base = random_rgb(shape + (3,), dtype, seed=3)
    base[0, 0, 5, 1] = float("nan")  # that pixel's outputs are NaN, its neighbours are not
    base[0, 1, 7] = 1.0  # white: +inf
    rgb = image_view(base.to(device), layout)
    depth, want = guarded_pair(shape, torch.float32, device)
    dist, dist_want = guarded_pair(shape, torch.float32, device)
    ops["decode_depth"](rgb, depth.view, dist.view, -3.0, 10 / 3, None)
    ref_depth.decode_depth(base, want.view, dist_want.view, -3.0, 10 / 3, None)
    depth.check_guards()
    clear = torch.from_numpy(truth.tie_margin(base.double().numpy()) > 1e-2).reshape(shape)
    clear |= base.isnan().any(-1)  # NaN pixels have no margin but must match (NaN)
    assert clear.float().mean() > 0.9
    assert_depth_close(depth.view.cpu()[clear], want.view[clear])
    torch.testing.assert_close(dist.view.cpu()[clear], dist_want.view[clear], rtol=1e-6,
                               atol=1e-4, equal_nan=True)
    assert depth.view[0, 0, 5].isnan() and not depth.view[0, 0, 4:7:2].isnan().any()


def test_hilbert_project_float_near_white_keeps_precision(device, ops):
    """1 - t must come from 1 - x, not from t: depth near white is rel 1e-5."""
    x = torch.tensor([1.0 - 2.0 ** -k for k in range(8, 24)], dtype=torch.float32)
    base = torch.stack([torch.ones_like(x), x, torch.ones_like(x)], -1)[None, None]
    depth, want = guarded_pair(base.shape[:3], torch.float32, device)
    ops["decode_depth"](base.to(device), depth.view, None, -3.0, 10 / 3, None)
    t = (6.0 + x.double()) / 7.0
    assert_depth_close(depth.view.reshape(-1), torch.from_numpy(truth.depth_from_t(t.numpy())))


# --- normals ----------------------------------------------------------------------------

NORMAL_CASES = [  # input dtype, output dtype, flip_yz, layout
    (torch.uint8, torch.float32, False, "hwc"),
    (torch.uint8, torch.float16, True, "slice"),
    (torch.float16, torch.float32, True, "chw"),
    (torch.bfloat16, torch.bfloat16, False, "channels_last"),
    (torch.float32, torch.float32, True, "expand"),
    (torch.float64, torch.float32, False, "hwc"),
]


@pytest.mark.parametrize("in_dtype,out_dtype,flip,layout", NORMAL_CASES, ids=str)
def test_decode_normals_vs_reference(device, ops, in_dtype, out_dtype, flip, layout):
    shape = (2, 2, 131)
    base = random_rgb(shape + (3,), in_dtype, seed=4)
    if in_dtype.is_floating_point:
        base[0, 0, 3] = 0.5  # |n| = 0: the zero vector
        base[0, 1, 4, 2] = float("nan")
    rgb = image_view(base.to(device), layout)
    normals, want = guarded_pair(shape + (3,), out_dtype, device)
    norm, norm_want = guarded_pair(shape, torch.float32, device)
    ops["decode_normals"](rgb, normals.view, norm.view, flip, 1e-6)
    ref_normals.decode_normals(image_view(base, layout), want.view, norm_want.view, flip, 1e-6)
    normals.check_guards()
    norm.check_guards()
    tol = 1e-6 if out_dtype == torch.float32 else torch.finfo(out_dtype).eps
    torch.testing.assert_close(normals.view.cpu(), want.view, rtol=tol, atol=tol, equal_nan=True)
    torch.testing.assert_close(norm.view.cpu(), norm_want.view, rtol=1e-6, atol=1e-6,
                               equal_nan=True)
    if in_dtype.is_floating_point and layout != "expand":
        assert torch.equal(normals.view[0, 0, 3].cpu().float(), torch.zeros(3))


# --- segmentation -----------------------------------------------------------------------

def make_palette(k: int, seed: int) -> torch.Tensor:
    """Integer palette with duplicates inside a 64-colour tile and across tiles, so the
    lowest index must win both within ``argmin`` and when tiles merge."""
    gen = torch.Generator().manual_seed(seed)
    palette = torch.randint(0, 256, (k, 3), generator=gen).float()
    if k >= 19:
        palette[11] = palette[4]
    if k >= 300:
        palette[250] = palette[20]
        palette[70] = palette[5]
    return palette


def seg_image(shape, dtype, palette, seed) -> torch.Tensor:
    """Random pixels, the palette colours themselves (exact ties between duplicates), and
    pixels at squared distance 25 and 26 from colour 0 (the max_dist2 = 25 boundary)."""
    rgb = random_rgb(shape + (3,), torch.uint8, seed=seed)
    flat = rgb.view(-1, 3)
    k = min(palette.shape[0], flat.shape[0] - 2)
    flat[:k] = palette[:k].to(torch.uint8)
    c0 = palette[0].clamp(5, 250)
    flat[-2] = (c0 + torch.tensor([3.0, 4.0, 0.0])).to(torch.uint8)
    flat[-1] = (c0 + torch.tensor([3.0, 4.0, 1.0])).to(torch.uint8)
    palette[0] = c0
    if dtype == torch.uint8:
        return rgb
    return (rgb.double() / 255.0).to(dtype)


SEG_CASES = [  # K, image dtype, labels dtype, layout, max_dist2, ignore_index
    (1, torch.uint8, torch.uint8, "hwc", None, 255),
    (19, torch.uint8, torch.int64, "slice", 25.0, 255),
    (19, torch.float32, torch.int32, "chw", None, 255),
    (19, torch.float16, torch.int64, "channels_last", 400.0, -1),
    (300, torch.uint8, torch.int16, "chw", 25.0, -1),
    (300, torch.bfloat16, torch.int64, "hwc", None, -1),
    (300, torch.float64, torch.int32, "expand", 900.0, 300),
]


@pytest.mark.parametrize("k,dtype,label_dtype,layout,max_dist2,ignore", SEG_CASES, ids=str)
def test_decode_segmentation_vs_reference(device, ops, k, dtype, label_dtype, layout,
                                          max_dist2, ignore):
    shape = (1, 3, 131)
    palette = make_palette(k, seed=k)
    base = seg_image(shape, dtype, palette, seed=5)
    if dtype == torch.float64:
        palette = palette.double()
    rgb = image_view(base.to(device), layout)
    labels, want = guarded_pair(shape, label_dtype, device)
    dist, dist_want = guarded_pair(shape, torch.float32, device)
    ops["decode_segmentation"](rgb, palette.to(device), labels.view, dist.view, max_dist2,
                               ignore)
    ref_seg.decode_segmentation(image_view(base, layout), palette, want.view, dist_want.view,
                                max_dist2, ignore)
    labels.check_guards()
    dist.check_guards()
    got = labels.view.cpu()
    if dtype == torch.uint8:
        assert torch.equal(got, want.view)
        if max_dist2 == 25.0:
            assert got.reshape(-1)[-2] == 0 and got.reshape(-1)[-1] == ignore  # dist == r kept
    else:
        units = truth.units(image_view(base, layout).double().numpy()).reshape(-1, 3)
        d2 = ((units[:, None] - palette.double().numpy()[None]) ** 2).sum(-1)
        part = np.partition(d2, 1, axis=1) if k > 1 else np.concatenate([d2, d2 + 1], 1)
        clear = torch.from_numpy(part[:, 1] - part[:, 0] > 1e-2).reshape(shape)
        assert torch.equal(got[clear], want.view[clear])
    torch.testing.assert_close(dist.view.cpu(), dist_want.view, rtol=1e-6, atol=1e-4)


def test_segmentation_nan_pixel_gets_ignore_index(device, ops):
    base = random_rgb((1, 1, 9, 3), torch.float32, seed=6)
    base[0, 0, 4, 0] = float("nan")
    palette = make_palette(19, seed=1).to(device)
    labels = torch.zeros((1, 1, 9), dtype=torch.int64, device=device)
    dist = torch.zeros((1, 1, 9), device=device)
    ops["decode_segmentation"](base.to(device), palette, labels, dist, None, 255)
    assert labels[0, 0, 4] == 255 and dist[0, 0, 4].isnan()
    assert (labels[0, 0, :4] < 19).all() and not dist[0, 0, 5:].isnan().any()


def test_label_table_build_matches_reference(device):
    """Table entries for a run of colour indices (the table path's build kernel)."""
    from vbkernels.triton import segmentation as seg

    palette = make_palette(300, seed=7)
    first, count = 0x40_20_10, 300
    table = torch.full((1 << 24,), -1, dtype=torch.int16, device=device)
    seg.build_label_table(palette.to(device), first, count, table)
    idx = torch.arange(first, first + count)
    colours = torch.stack([idx >> 16, (idx >> 8) & 255, idx & 255], -1).float()
    want, _ = ref_seg.nearest_palette(colours, palette)
    assert torch.equal(table[first:first + count].cpu().long(), want)
    assert (table[first - 1] == -1) and (table[first + count] == -1)


def test_label_table_lookup(device):
    """The gather kernel indexes the table by r<<16|g<<8|b and applies max_dist2."""
    from vbkernels.triton import segmentation as seg

    gen = torch.Generator().manual_seed(8)
    palette = make_palette(300, seed=8)
    table = torch.randint(0, 300, (1 << 24,), generator=gen, dtype=torch.int16)
    base = random_rgb((2, 2, 131, 3), torch.uint8, seed=9)
    rgb = image_view(base.to(device), "slice")
    labels, _ = guarded_pair(base.shape[:3], torch.int64, device)
    dist, _ = guarded_pair(base.shape[:3], torch.float32, device)
    max_dist2 = 40000.0
    seg.lookup_labels(rgb, table.to(device), palette.to(device), labels.view, dist.view,
                      max_dist2, -1)
    labels.check_guards()
    p = base.long()
    looked_up = table[(p[..., 0] << 16) | (p[..., 1] << 8) | p[..., 2]].long()
    d2 = ((base.float() - palette[looked_up]) ** 2).sum(-1)
    assert (d2 > max_dist2).any() and (d2 <= max_dist2).any()
    assert torch.equal(labels.view.cpu(), torch.where(d2 > max_dist2, -1, looked_up))
    torch.testing.assert_close(dist.view.cpu(), d2.sqrt(), rtol=1e-6, atol=1e-4)


# --- encoders ---------------------------------------------------------------------------

@pytest.mark.parametrize("out_dtype", [torch.uint8, torch.float32, torch.float16])
def test_hilbert_walk_vs_reference(device, ops, out_dtype):
    gen = torch.Generator().manual_seed(10)
    t = torch.rand((2, 1, 131), generator=gen) * 1.2 - 0.1
    t.view(-1)[:8] = torch.arange(8) / 7.0  # the vertices
    t.view(-1)[8] = float("nan")
    shape = t.shape + (3,)
    rgb, want = guarded_pair(shape, out_dtype, device)
    ops["hilbert_walk"](t.to(device), rgb.view)
    ref_depth.hilbert_walk(t, want.view)
    rgb.check_guards()
    if out_dtype == torch.uint8:
        keep = ~t.isnan()  # NaN has no uint8 colour; the reference's cast is undefined
        assert torch.equal(rgb.view.cpu()[keep], want.view[keep])
    else:
        # float32 is one rounding of the same float64 value; float16 may round twice on GPU.
        tol = 0 if out_dtype == torch.float32 else torch.finfo(out_dtype).eps
        torch.testing.assert_close(rgb.view.cpu(), want.view, rtol=0, atol=tol, equal_nan=True)


@pytest.mark.parametrize("lam,c", [(-3.0, 10 / 3), (-2.5, 1.5)])
def test_encode_depth_vs_reference(device, ops, lam, c):
    gen = torch.Generator().manual_seed(11)
    depth = (torch.rand((1, 3, 131), generator=gen, dtype=torch.float64) ** 3) * 300
    depth.view(-1)[:3] = torch.tensor([0.0, math.inf, 1e-6], dtype=torch.float64)
    rgb, want = guarded_pair(depth.shape + (3,), torch.uint8, device)
    out_view = image_view(torch.zeros(depth.shape + (3,), dtype=torch.uint8), "chw").to(device)
    ops["encode_depth"](depth.to(device), rgb.view, lam, c)
    ops["encode_depth"](depth.float().to(device), out_view, lam, c)
    ref_depth.encode_depth(depth, want.view, lam, c)
    rgb.check_guards()
    assert torch.equal(rgb.view[0, 0, :2].cpu(), torch.tensor([[0, 0, 0], [255, 255, 255]],
                                                              dtype=torch.uint8))
    # float64 math is mirrored, but our log1p/expm1 differ from libm in the last bits, so a
    # value sitting on a rounding boundary may land one step away.
    diff = (rgb.view.cpu().int() - want.view.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01
    float_diff = (out_view.cpu().int() - want.view.int()).abs()
    assert float_diff.max() <= 1


@pytest.mark.parametrize("out_dtype,flip", [(torch.uint8, False), (torch.uint8, True),
                                            (torch.float32, True), (torch.bfloat16, False)])
def test_encode_normals_vs_reference(device, ops, out_dtype, flip):
    gen = torch.Generator().manual_seed(12)
    normals = torch.randn((2, 2, 131, 3), generator=gen, dtype=torch.float64)
    normals = normals / normals.norm(dim=-1, keepdim=True)
    normals.view(-1, 3)[0] = torch.tensor([1.5, -1.5, 0.0], dtype=torch.float64)  # clamped
    src = normals.float().permute(0, 3, 1, 2).contiguous().movedim(1, -1)  # chw storage
    rgb, want = guarded_pair(normals.shape, out_dtype, device)
    ops["encode_normals"](src.to(device), rgb.view, flip)
    ref_normals.encode_normals(src, want.view, flip)
    rgb.check_guards()
    tol = 0 if out_dtype in (torch.uint8, torch.float32) else torch.finfo(out_dtype).eps
    torch.testing.assert_close(rgb.view.cpu(), want.view, rtol=0, atol=tol)


@pytest.mark.parametrize("label_dtype", [torch.uint8, torch.int16, torch.int64])
def test_encode_segmentation_vs_reference(device, ops, label_dtype):
    gen = torch.Generator().manual_seed(13)
    palette = make_palette(19, seed=13).to(torch.uint8)
    labels = torch.randint(0, 25, (2, 2, 131), generator=gen).to(label_dtype)
    if label_dtype != torch.uint8:
        labels.view(-1)[0] = -1  # outside [0, K): ignore colour
    ignore = torch.tensor([1, 2, 3], dtype=torch.uint8)
    rgb, want = guarded_pair(labels.shape + (3,), torch.uint8, device)
    ops["encode_segmentation"](labels.to(device), palette.to(device), rgb.view,
                               ignore.to(device))
    ref_seg.encode_segmentation(labels, palette, want.view, ignore)
    rgb.check_guards()
    assert torch.equal(rgb.view.cpu(), want.view)
    assert (labels >= 19).any()


# --- empty batches, 64-bit offsets --------------------------------------------------------

@pytest.mark.parametrize("shape", [(0, 3, 4), (2, 0, 4), (2, 3, 0)], ids=str)
def test_empty_batches_launch_nothing(device, ops, shape):
    rgb = torch.zeros(shape + (3,), dtype=torch.uint8, device=device)
    depth = torch.zeros(shape, device=device)
    ops["decode_depth"](rgb, depth, None, -3.0, 10 / 3, None)
    ops["decode_segmentation"](rgb, torch.zeros((3, 3), device=device),
                               torch.zeros(shape, dtype=torch.int64, device=device), None,
                               None, 255)
    ops["hilbert_walk"](depth, rgb)
    assert rgb.shape == shape + (3,)


@triton.jit
def _offsets_kernel(p_out, H, W, s_n, s_h, s_w, BLOCK_W: tl.constexpr):
    """Stores the element offsets ``pixel_offsets`` computes, without dereferencing them."""
    offsets, mask = cm.pixel_offsets(H, W, s_n, s_h, s_w, BLOCK_W)
    row = tl.program_id(0)
    w = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    tl.store(p_out + row.to(tl.int64) * W + w, offsets, mask=mask)


def test_pixel_offsets_are_64_bit(device):
    """Strides that fit int32 but whose products do not (as in a 128 x 4K x 3 batch)."""
    n, h, w = 5, 3, 7
    s_n, s_h, s_w = (1 << 30) + 7, (1 << 29) + 1, 3
    out = torch.zeros((n * h, w), dtype=torch.int64, device=device)
    _offsets_kernel[(n * h, 1)](out, h, w, s_n, s_h, s_w, BLOCK_W=8)
    idx = torch.arange(n * h)
    want = ((idx // h) * s_n + (idx % h) * s_h)[:, None] + torch.arange(w) * s_w
    assert want.max() > 2**32
    assert torch.equal(out.cpu(), want)


@needs_cuda
@pytest.mark.cuda
def test_more_than_2_31_elements_on_cuda(ops):
    """A (3, 16384, 16384, 3) uint8 batch: 2.4e9 elements, offsets past 2^31."""
    shape = (3, 16384, 16384)
    rgb = torch.randint(0, 256, shape + (3,), dtype=torch.uint8, device="cuda")
    assert rgb.numel() > 2**31
    t = torch.full(shape, float("nan"), device="cuda")
    ops["hilbert_project"](rgb, t)
    tail = rgb[2, -64:]
    want = torch.empty(tail.shape[:2], device="cuda")
    ref_depth.hilbert_project(tail[None], want[None])
    torch.testing.assert_close(t[2, -64:], want, atol=1e-6, rtol=0)
    assert not t.isnan().any()


@needs_cuda
@pytest.mark.cuda
def test_label_table_path_on_cuda(ops):
    """uint8, K = 300, >= 2^20 pixels: decoded through the cached 2^24-entry table."""
    from vbkernels.triton import segmentation as seg

    palette = make_palette(300, seed=14).cuda()
    rgb = random_rgb((1, 1024, 1024, 3), torch.uint8, seed=15, device="cuda")
    assert seg.use_label_table(rgb, palette)
    labels = torch.empty(rgb.shape[:3], dtype=torch.int16, device="cuda")
    want = torch.empty_like(labels)
    for _ in range(2):  # the second call hits the cache
        ops["decode_segmentation"](rgb, palette, labels, None, 400.0, -1)
    ref_seg.decode_segmentation(rgb, palette, want, None, 400.0, -1)
    assert torch.equal(labels, want)


def test_autotune_keys_are_coarse():
    """Frame sizes share a tuning key per width bucket; narrow rows get a single config."""
    assert cm.width_bucket(1) == 1 and cm.width_bucket(131) == 256
    assert cm.width_bucket(3840) == cm.width_bucket(4000) == cm.width_bucket(100000) == 4096
    configs = [triton.Config({"BLOCK_W": bw}, num_warps=4) for bw in (256, 1024)]
    assert cm.prune_wide_blocks(configs, {"W_BUCKET": cm.width_bucket(131)}) == configs[:1]
    assert cm.prune_wide_blocks(configs, {"W_BUCKET": cm.width_bucket(3840)}) == configs


# --- the interpreter forgives what the GPU compiler does not --------------------------------

_COMPILE_SCRIPT = textwrap.dedent("""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.autotuner import Autotuner
    from vbkernels.triton import depth, normals, segmentation as seg

    F = {n: "fp32" for n in ("scale", "expo", "max_depth", "eps", "max_dist2", "scale_hi",
                             "scale_lo", "lam1_hi", "lam1_lo")}
    CASES = [
        (depth._decode_depth_kernel, {"p_rgb": "*u8", "p_table": "*fp32", "p_out": "*fp32",
                                      "p_dist": "*fp32"},
         dict(IS_U8=True, IS_F64=False, WRITE_DEPTH=True, HAS_DIST=True, HAS_MAX=True)),
        (normals._decode_normals_kernel, {"p_rgb": "*fp64", "p_out": "*bf16", "p_norm": "*fp32"},
         dict(IS_U8=False, IS_F64=True, FLIP_YZ=True, HAS_NORM=True)),
        (seg._decode_segmentation_kernel, {"p_rgb": "*u8", "p_pal": "*fp32", "p_labels": "*i16",
         "p_dist": "*fp32"}, dict(IS_U8=True, IS_F64=False, HAS_MAX=True, HAS_DIST=True,
                                  BLOCK_K=64)),
        (depth._walk_kernel, {"p_in": "*fp32", "p_rgb": "*u8"}, dict(FROM_DEPTH=True, OUT_U8=True)),
        (seg._lookup_kernel, {"p_rgb": "*u8", "p_table": "*i16", "p_pal": "*fp32",
                              "p_labels": "*i64", "p_dist": "*fp32"},
         dict(HAS_MAX=True, HAS_DIST=True)),
    ]
    for kernel, pointers, constexprs in CASES:
        fn = kernel.fn if isinstance(kernel, Autotuner) else kernel
        constexprs = {**constexprs, "BLOCK_W": 128}
        sig = {n: "constexpr" if n in constexprs else pointers.get(n, F.get(n, "i32"))
               for n in fn.arg_names}
        triton.compile(ASTSource(fn, sig, constexprs), target=GPUTarget("cuda", 90, 32))
        print("compiled", fn.__name__)
""")


@pytest.mark.skipif("cuda" in DEVICES, reason="on a GPU every test compiles the kernels")
def test_kernels_compile_for_sm90_without_a_gpu():
    """The interpreter accepts code the compiler rejects (a constexpr global, return types
    that differ between branches): compile representative variants for sm_90."""
    assert compile_for_sm90(_COMPILE_SCRIPT).count("compiled") == 5


_QUAD_PTX_SCRIPT = textwrap.dedent("""
    import json, re
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from vbkernels.triton import depth, normals, segmentation as seg

    SCALARS = {"max_depth": "fp32", "eps": "fp32", "max_dist2": "fp32", "K": "i32",
               "ignore_index": "i32"}
    CASES = {
        "depth": (depth._walk_quads_kernel, {"p_rgb": "*u8", "p_table": "*fp32",
                  "p_out": "*fp32", "p_dist": "*fp32"}, dict(HAS_DIST=True, HAS_MAX=True)),
        "normals": (normals._normals_quads_kernel, {"p_rgb": "*u8", "p_out": "*fp32",
                    "p_norm": "*fp32"}, dict(FLIP_YZ=True, HAS_NORM=False)),
        "segmentation": (seg._seg_quads_kernel, {"p_rgb": "*u8", "p_pal": "*fp32",
                         "p_table": "*u8", "p_labels": "*u8", "p_dist": "*fp32"},
                         dict(USE_TABLE=False, HAS_MAX=False, HAS_DIST=False)),
        "encode": (depth._encode_quads_kernel, {"p_x": "*fp32", "p_thr": "*fp32",
                   "p_colour": "*i32", "p_rgb": "*u8"}, {}),
    }
    # Global memory instructions and the special-function ones the tests look for, each as
    # (opcode, predicated): the full-block path is unmasked, the last program's tail masked.
    PATTERN = re.compile(r"^\\s*(@!?%p\\d+\\s+)?((?:ld|st)\\.global[\\w.]*|lg2[\\w.]*|ex2[\\w.]*)",
                         re.M)
    found = {}
    for name, (fn, pointers, constexprs) in CASES.items():
        constexprs = {**constexprs, "BLOCK": 256}
        sig = {n: "constexpr" if n in constexprs else pointers.get(n, SCALARS.get(n, "i64"))
               for n in fn.arg_names}
        # Torch's allocations are 16-byte aligned; Triton specializes launches on that.
        attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names)
                 if n in pointers}
        kernel = triton.compile(ASTSource(fn, sig, constexprs, attrs),
                                target=GPUTarget("cuda", 90, 32))
        found[name] = [(m.group(2), bool(m.group(1)))
                       for m in PATTERN.finditer(kernel.asm["ptx"])]
    print(json.dumps(found))
""")


@pytest.mark.skipif("cuda" in DEVICES, reason="on a GPU every test compiles the kernels")
def test_quad_kernels_ptx_structure_for_sm90():
    """The uint8 fast paths keep their shape when nobody can time them: the full-block path
    (unpredicated instructions) reads pixels as 32-bit words or wider, never bytes, stores
    depth and normals as 4-vectors, and the uint8 depth kernel has no lg2/ex2."""
    import json

    found = json.loads(compile_for_sm90(_QUAD_PTX_SCRIPT).strip().splitlines()[-1])

    def unmasked(name, prefix):
        return [op for op, predicated in found[name] if op.startswith(prefix) and not predicated]

    wide = ("ld.global.b32", "ld.global.u32", "ld.global.v2", "ld.global.v4")
    for name in ("depth", "normals", "segmentation"):
        loads = unmasked(name, "ld.global")
        assert loads and all(op.startswith(wide) for op in loads), (name, loads)
        assert sum(op == "ld.global.b32" for op in loads) >= 3, (name, loads)
    for name in ("depth", "normals"):
        stores = unmasked(name, "st.global")
        assert stores and all(".v4." in op or ".v2." in op for op in stores), (name, stores)
    assert any(".v2." in op or ".v4." in op for op in unmasked("segmentation", "st.global"))
    assert all(op.startswith("ld.global.v4") for op in unmasked("encode", "ld.global.v"))
    assert unmasked("encode", "ld.global.v4")
    assert not [op for op, _ in found["depth"] if op.startswith(("lg2", "ex2"))]


# --- backend and torch integration --------------------------------------------------------

def test_backend_devices_and_auto_never_interprets():
    backend = load_backend("triton")
    interpreted = "cpu" in backend.devices
    assert backend.interpreted_on_cpu == interpreted
    assert set(backend.ops) == set(vb._dispatch.KERNEL_OP_NAMES)
    chosen, _ = select("decode_depth", "auto", torch.device("cpu"), torch.uint8)
    assert chosen.name != "triton"
    if interpreted:
        chosen, _ = select("decode_depth", "triton", torch.device("cpu"), torch.uint8)
        assert chosen.name == "triton"


def _opcheck_cases(device):
    rgb = random_rgb((1, 2, 3, 3), torch.uint8, seed=16, device=device)
    f32 = dict(dtype=torch.float32, device=device)
    palette = make_palette(19, seed=16).to(device)
    return {
        "hilbert_project": (rgb, torch.empty((1, 2, 3), **f32)),
        "decode_depth": (rgb, torch.empty((1, 2, 3), **f32), torch.empty((1, 2, 3), **f32),
                         -3.0, 10 / 3, 20.0),
        "decode_normals": (rgb, torch.empty((1, 2, 3, 3), **f32), None, True, 1e-6),
        "decode_segmentation": (rgb, palette, torch.empty((1, 2, 3), dtype=torch.int64,
                                                          device=device),
                                torch.empty((1, 2, 3), **f32), 400.0, 255),
        "hilbert_walk": (torch.rand((1, 2, 3), device=device), torch.empty_like(rgb)),
        "encode_depth": (torch.rand((1, 2, 3), device=device) * 9, torch.empty_like(rgb),
                         -3.0, 10 / 3),
        "encode_normals": (torch.rand((1, 2, 3, 3), device=device), torch.empty_like(rgb),
                           False),
        "encode_segmentation": (torch.randint(0, 20, (1, 2, 3), device=device),
                                palette.to(torch.uint8), torch.empty_like(rgb),
                                torch.tensor([0, 0, 0], dtype=torch.uint8, device=device)),
        "depth_to_points": (torch.rand((1, 2, 3), device=device) + 1,
                            torch.tensor([[2.0, 3.0, 1.0, 0.5, 0.0]], device=device),
                            torch.empty((1, 2, 3, 3), **f32), True, False),
        "normals_from_depth": (torch.rand((1, 2, 3), device=device) + 1,
                               torch.tensor([[2.0, 3.0, 1.0, 0.5, 0.1]], device=device),
                               torch.empty((1, 2, 3, 3), **f32), False, True),
        "decode_colormap": (rgb, palette[:5].round().double(),
                            torch.linspace(0.1, 0.9, 5, dtype=torch.float64, device=device),
                            torch.empty((1, 2, 3), **f32), torch.empty((1, 2, 3), **f32),
                            30.0),
    }


@pytest.mark.parametrize("name", sorted(vb._dispatch.OP_NAMES))
def test_ops_are_registered_custom_ops(device, name):
    op = getattr(torch.ops.vbkernels_triton, name)
    torch.library.opcheck(op, _opcheck_cases(device)[name],
                          test_utils=("test_schema", "test_faketensor",
                                      "test_aot_dispatch_dynamic"))


def test_compiled_public_call_has_no_graph_break(device):
    """fullgraph=True raises on any graph break in vbkernels' front end or the op."""
    palette = make_palette(19, seed=17).to(device)

    def decode(rgb):
        depth = vb.decode_depth(rgb, backend="triton")
        normals = vb.decode_normals(rgb, backend="triton")
        labels = vb.decode_segmentation(rgb, palette, backend="triton")
        return depth + normals[..., 2] + labels

    # On CPU inductor would need a C++ toolchain; aot_eager still runs dynamo fullgraph,
    # functionalisation and the fake kernels, which is where breaks would come from.
    compiled = torch.compile(decode, fullgraph=True,
                             backend="inductor" if device == "cuda" else "aot_eager")
    rgb = with_tie_colours((1, 2, 5, 3), seed=17, device=device)
    torch.testing.assert_close(compiled(rgb), decode(rgb))


@needs_cuda
@pytest.mark.cuda
def test_cuda_graph_capture_and_replay(ops):
    rgb = random_rgb((2, 64, 96, 3), torch.uint8, seed=18, device="cuda")
    depth = torch.empty(rgb.shape[:3], device="cuda")
    ops["decode_depth"](rgb, depth, None, -3.0, 10 / 3, None)  # autotune outside capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        ops["decode_depth"](rgb, depth, None, -3.0, 10 / 3, None)
    rgb.copy_(random_rgb(rgb.shape, torch.uint8, seed=19, device="cuda"))
    depth.fill_(float("nan"))
    graph.replay()
    want = torch.empty_like(depth)
    ref_depth.decode_depth(rgb, want, None, -3.0, 10 / 3, None)
    assert_depth_close(depth, want)
