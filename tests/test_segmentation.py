"""docs/format.md, Segmentation, on every backend: decode_segmentation / encode_segmentation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import vbkernels as vb
from tests import truth
from tests.conftest import is_interpreted, random_rgb


def palette(k, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (k, 3), generator=gen, dtype=torch.int64)


@pytest.mark.parametrize("k", [1, 2, 19, 300])
def test_uint8_labels_exact(backend_device, k):
    backend, device = backend_device
    shape = (2, 5, 9, 3) if is_interpreted(backend, device) else (3, 37, 41, 3)
    rgb = random_rgb(shape, torch.uint8, seed=20 + k, device=device)
    pal = palette(k, seed=k)
    labels, dist = vb.decode_segmentation(rgb, pal, return_distance=True, ignore_index=-1,
                                          backend=backend)
    assert labels.dtype == torch.int64 and labels.shape == shape[:-1]
    want, d2 = truth.nearest(rgb.cpu().numpy(), pal.numpy())
    assert np.array_equal(labels.cpu().numpy().ravel(), want)
    np.testing.assert_allclose(dist.cpu().numpy().ravel(), np.sqrt(d2), rtol=1e-6)


def test_ties_go_to_the_lowest_index(backend_device):
    backend, device = backend_device
    # Each pixel is equidistant from several palette colours; duplicates included.
    pal = torch.tensor([[0, 10, 10], [20, 10, 10], [10, 0, 10], [10, 10, 10], [10, 10, 10]])
    rgb = torch.tensor([[[10, 10, 10], [10, 10, 0], [10, 5, 10], [5, 10, 10]]],
                       dtype=torch.uint8, device=device)
    labels = vb.decode_segmentation(rgb, pal, backend=backend).cpu()
    assert labels.tolist() == [[3, 3, 2, 0]]
    # Reversing the palette must still pick the lowest index of the tied set.
    labels_rev = vb.decode_segmentation(rgb, pal.flip(0), backend=backend).cpu()
    assert labels_rev.tolist() == [[0, 0, 0, 0]]


def test_max_distance_keeps_equal_and_drops_farther(backend_device):
    backend, device = backend_device
    pal = torch.tensor([[0, 0, 0], [255, 255, 255]])
    rgb = torch.tensor([[[10, 0, 0], [10, 1, 0], [6, 8, 0], [250, 255, 255]]], dtype=torch.uint8,
                       device=device)
    labels = vb.decode_segmentation(rgb, pal, max_distance=10, backend=backend).cpu()
    assert labels.tolist() == [[0, 255, 0, 1]]
    # sqrt(101) rounds either side of the integer 101 depending on float width; the
    # threshold is exact anyway (integer distances compare against floor(r^2)).
    r = math.sqrt(101)
    labels = vb.decode_segmentation(rgb, pal, max_distance=r, ignore_index=-1,
                                    out_dtype=torch.int16, backend=backend).cpu()
    assert labels.dtype == torch.int16
    assert labels.tolist() == [[0, (0 if r * r >= 101 else -1), 0, 1]]


def test_float_input_and_float_palette(backend_device):
    backend, device = backend_device
    rgb = random_rgb((2, 6, 7, 3), torch.float32, seed=21)
    pal = torch.rand((19, 3), generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 255
    labels, dist = vb.decode_segmentation(rgb.to(device), pal, return_distance=True,
                                          backend=backend)
    want, d2 = truth.nearest(rgb.double().numpy(), pal.numpy())
    assert np.array_equal(labels.cpu().numpy().ravel(), want)
    np.testing.assert_allclose(dist.cpu().numpy().ravel(), np.sqrt(d2), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs(backend_device, dtype):
    backend, device = backend_device
    rgb = random_rgb((1, 5, 11, 3), dtype, seed=22)
    pal = palette(19, seed=3)
    labels = vb.decode_segmentation(rgb.to(device), pal, backend=backend).cpu().numpy().ravel()
    want, d2 = truth.nearest(rgb.double().numpy(), pal.numpy())
    # Half inputs are exact in float32; only near-ties could differ, and random data has few.
    assert (labels == want).mean() > 0.99


def test_nan_pixel_gets_ignore_index(backend_device):
    backend, device = backend_device
    rgb = random_rgb((1, 3, 4, 3), torch.float32, seed=23)
    rgb[0, 2, 1, 0] = float("nan")
    labels, dist = vb.decode_segmentation(rgb.to(device), palette(5), ignore_index=-1,
                                          return_distance=True, backend=backend)
    labels, dist = labels.cpu(), dist.cpu()
    assert labels[0, 2, 1] == -1 and (labels >= 0).sum() == 11
    assert torch.isnan(dist[0, 2, 1]) and torch.isnan(dist).sum() == 1


@pytest.mark.parametrize("out_dtype", [torch.uint8, torch.int16, torch.int32])
def test_out_dtypes_and_out(backend_device, out_dtype):
    backend, device = backend_device
    rgb = random_rgb((2, 3, 5, 4), torch.uint8, seed=24, device=device)  # chw
    pal = palette(19, seed=5)
    labels = vb.decode_segmentation(rgb, pal, out_dtype=out_dtype, backend=backend)
    assert labels.dtype == out_dtype and labels.shape == (2, 5, 4)
    want = vb.decode_segmentation(rgb.cpu(), pal, backend="torch")
    assert torch.equal(labels.cpu().to(torch.int64), want)
    out = torch.full((2, 5, 4), 77, dtype=out_dtype, device=device)
    assert vb.decode_segmentation(rgb, pal, out_dtype=out_dtype, out=out, backend=backend) is out
    assert torch.equal(out.cpu().to(torch.int64), want)


def test_labels_that_do_not_fit_raise():
    rgb = torch.zeros(1, 2, 2, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="do not fit"):
        vb.decode_segmentation(rgb, palette(300), ignore_index=-1, out_dtype=torch.uint8)
    with pytest.raises(ValueError, match="ignore_index=255 is a valid class"):
        vb.decode_segmentation(rgb, palette(300))
    with pytest.raises(ValueError, match="do not fit"):
        vb.decode_segmentation(rgb, palette(3), max_distance=5, ignore_index=-1,
                               out_dtype=torch.uint8)


def test_binary_mask_is_the_two_colour_case(backend_device):
    backend, device = backend_device
    rgb = torch.tensor([[[0, 0, 0], [255, 255, 255], [200, 190, 230], [30, 60, 20]]],
                       dtype=torch.uint8, device=device)
    mask = vb.decode_segmentation(rgb, [[0, 0, 0], [255, 255, 255]], backend=backend).cpu()
    assert mask.tolist() == [[0, 1, 1, 0]]


def test_encode_segmentation(backend_device):
    backend, device = backend_device
    pal = palette(19, seed=6)
    gen = torch.Generator().manual_seed(25)
    labels = torch.randint(-2, 21, (2, 4, 5), generator=gen).to(device)
    rgb = vb.encode_segmentation(labels, pal, ignore_color=(1, 2, 3), backend=backend).cpu()
    assert rgb.shape == (2, 4, 5, 3) and rgb.dtype == torch.uint8
    lab = labels.cpu()
    valid = (lab >= 0) & (lab < 19)
    assert torch.equal(rgb[valid], pal[lab[valid]].to(torch.uint8))
    assert (rgb[~valid] == torch.tensor([1, 2, 3], dtype=torch.uint8)).all()
    back = vb.decode_segmentation(rgb.to(device), pal, backend=backend).cpu()
    unique = torch.unique(pal, dim=0).shape[0] == 19
    if unique:
        assert torch.equal(back[valid], lab[valid])
    chw = vb.encode_segmentation(labels, pal, layout="chw", backend=backend).cpu()
    assert chw.shape == (2, 3, 4, 5)


@pytest.mark.slow
def test_all_2_24_colours_numpy_equals_torch():
    v = torch.arange(1 << 24, dtype=torch.int32)
    rgb = torch.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], -1).to(torch.uint8)
    rgb = rgb.reshape(256, 65536, 3)
    pal = palette(19, seed=7)
    ref = vb.decode_segmentation(rgb, pal, max_distance=60, ignore_index=-1, backend="torch")
    got = torch.from_numpy(vb.decode_segmentation(rgb.numpy(), pal.numpy(), max_distance=60,
                                                  ignore_index=-1, backend="numpy"))
    assert torch.equal(ref, got)
    if "cpu" in vb.available_backends():
        assert torch.equal(ref, vb.decode_segmentation(rgb, pal, max_distance=60,
                                                       ignore_index=-1, backend="cpu"))


# ------------------------------------------------ Palette objects and the ignore colour


@pytest.mark.parametrize("name", ["cityscapes", "ade20k", "voc"])
def test_builtin_palette_round_trip_including_ignore(backend_device, name):
    """encode -> decode with the same Palette is the identity for every label, the ignore
    label included (ADE20K's skyscraper shares road's colour, so it comes back as road)."""
    from vbkernels.palettes import load_palette

    backend, device = backend_device
    pal = load_palette(name)
    labels = torch.cat([torch.arange(len(pal)), torch.tensor([pal.ignore_index])])
    labels = labels.reshape(1, 1, -1).repeat(2, 3, 1).to(device)
    rgb = vb.encode_segmentation(labels, pal, backend=backend)
    assert (rgb[labels == pal.ignore_index] == torch.tensor(
        pal.ignore_color, dtype=torch.uint8, device=device)).all()
    expected = labels.cpu().clone()
    if name == "ade20k":
        expected[expected == 48] = 6
    for out_dtype in (None, torch.uint8):
        back = vb.decode_segmentation(rgb, pal, out_dtype=out_dtype, backend=backend).cpu()
        assert torch.equal(back.long(), expected), out_dtype
    float_back = vb.decode_segmentation(rgb.float() / 255, pal, backend=backend).cpu()
    assert torch.equal(float_back, expected)


def test_ignore_colour_uint8_exact_against_extended_palette(backend_device):
    """Pixels nearest the ignore colour get ignore_index; the rest are exactly the nearest
    of K classes + the ignore colour as entry K (ties to the lower index: the class)."""
    backend, device = backend_device
    shape = (2, 5, 9, 3) if is_interpreted(backend, device) else (3, 37, 41, 3)
    rgb = random_rgb(shape, torch.uint8, seed=71, device=device)
    pal = palette(19, seed=72)
    ignore = (40, 200, 90)
    labels, dist = vb.decode_segmentation(rgb, pal, ignore_color=ignore, ignore_index=-1,
                                          return_distance=True, backend=backend)
    extended = np.concatenate([pal.numpy(), [ignore]])
    want, d2 = truth.nearest(rgb.cpu().numpy(), extended)
    want = np.where(want == 19, -1, want)
    assert np.array_equal(labels.cpu().numpy().ravel(), want)
    assert (want == -1).any()
    np.testing.assert_allclose(dist.cpu().numpy().ravel(), np.sqrt(d2), rtol=1e-6)


def test_ignore_colour_ties_go_to_the_class(backend_device):
    backend, device = backend_device
    # (10, 0, 0) is 10 from class 1 (20, 0, 0) and 10 from the ignore colour (0, 0, 0).
    pal = torch.tensor([[0, 0, 255], [20, 0, 0]])
    rgb = torch.tensor([[[10, 0, 0], [9, 0, 0], [11, 0, 0], [0, 0, 0]]], dtype=torch.uint8,
                       device=device)
    got = vb.decode_segmentation(rgb, pal, ignore_color=(0, 0, 0), backend=backend).cpu()
    assert got.tolist() == [[1, 255, 1, 255]]
    # An ignore colour equal to a class colour never wins.
    same = vb.decode_segmentation(rgb, pal, ignore_color=(20, 0, 0), backend=backend).cpu()
    assert same.tolist() == [[1, 1, 1, 1]]


def test_ignore_index_equal_to_k_and_wide_scratch(backend_device):
    backend, device = backend_device
    pal = palette(3, seed=73)
    ignore = (1, 2, 3)
    rgb = torch.tensor([[[1, 2, 3]] + [c for c in pal.tolist()]], dtype=torch.uint8,
                       device=device)
    got = vb.decode_segmentation(rgb, pal, ignore_color=ignore, ignore_index=3, backend=backend)
    assert got.cpu().tolist() == [[3, 0, 1, 2]]
    # int16 holds the labels 0..32766 and -1 but not K = 32767 itself: decoded in a wider
    # scratch, then narrowed.
    big = torch.stack(torch.meshgrid(torch.arange(32), torch.arange(32), torch.arange(32),
                                     indexing="ij"), -1).reshape(-1, 3)[:32767] * 8
    pixels = torch.tensor([[[1, 2, 3], [8, 8, 8], [248, 248, 240]]], dtype=torch.uint8,
                          device=device)
    wide = vb.decode_segmentation(pixels, big, ignore_color=(3, 3, 3), ignore_index=-1,
                                  out_dtype=torch.int16, backend="torch")
    assert wide.dtype == torch.int16 and wide.cpu().tolist() == [[-1, 32 * 32 + 32 + 1, 32766]]


def test_palette_ignore_index_and_colour_are_defaults_explicit_wins(backend_device):
    from vbkernels.palettes import load_palette

    backend, device = backend_device
    voc = load_palette("voc")  # background black is class 0; ignore (224, 224, 192)
    rgb = torch.tensor([[[0, 0, 0], [224, 224, 192], [220, 220, 190]]], dtype=torch.uint8,
                       device=device)
    assert vb.decode_segmentation(rgb, voc, backend=backend).cpu().tolist() == [[0, 255, 255]]
    assert vb.decode_segmentation(rgb, voc, ignore_index=99,
                                  backend=backend).cpu().tolist() == [[0, 99, 99]]
    # A plain (K, 3) palette keeps the behaviour without an ignore colour.
    plain = vb.decode_segmentation(rgb, voc.colors.to(device), backend=backend).cpu()
    assert 255 not in plain.tolist()[0]
    painted = vb.encode_segmentation(torch.tensor([[255, -1]], device=device), voc,
                                     backend=backend).cpu()
    assert painted.tolist() == [[[224, 224, 192], [224, 224, 192]]]
    mine = vb.encode_segmentation(torch.tensor([[255]], device=device), voc,
                                  ignore_color=(9, 8, 7), backend=backend).cpu()
    assert mine.tolist() == [[[9, 8, 7]]]


def test_palette_with_numpy_input():
    from vbkernels.palettes import load_palette

    city = load_palette("cityscapes")
    labels = np.array([[0, 13, 255]])
    rgb = vb.encode_segmentation(labels, city)
    assert isinstance(rgb, np.ndarray) and rgb[0, 2].tolist() == [0, 0, 0]
    assert vb.decode_segmentation(rgb, city).tolist() == [[0, 13, 255]]


def test_bad_ignore_colour_and_full_palette():
    with pytest.raises(ValueError, match="ignore_color"):
        vb.decode_segmentation(torch.zeros(1, 1, 3, dtype=torch.uint8), [[0, 0, 0]],
                               ignore_color=(0, 0, 300))
    with pytest.raises(ValueError, match="ignore_color"):
        vb.decode_segmentation(torch.zeros(1, 1, 3, dtype=torch.uint8), [[0, 0, 0]],
                               ignore_color="red")
    full = torch.zeros(65535, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="at most 65534"):
        vb.decode_segmentation(torch.zeros(1, 1, 3, dtype=torch.uint8), full,
                               ignore_color=(0, 0, 0), ignore_index=-1)
    with pytest.raises(ValueError, match="do not fit"):  # the ignore label must fit out_dtype
        vb.decode_segmentation(torch.zeros(1, 1, 3, dtype=torch.uint8), [[9, 9, 9]],
                               ignore_color=(0, 0, 0), ignore_index=-1, out_dtype=torch.uint8)


def test_ignore_colour_traces_into_one_graph():
    from vbkernels.palettes import load_palette

    city = load_palette("cityscapes")
    labels = torch.tensor([[0, 5, 255, 18], [255, 1, 2, 3]])
    rgb = vb.encode_segmentation(labels, city)
    for out_dtype, backend in ((torch.uint8, "torch"), (torch.int32, "auto")):
        torch._dynamo.reset()
        def call(x, out_dtype=out_dtype, backend=backend):
            return vb.decode_segmentation(x, city, out_dtype=out_dtype, backend=backend)

        compiled = torch.compile(call, fullgraph=True, backend="eager")
        assert torch.equal(compiled(rgb).long(), labels)
