"""decode_instances: quality against an oracle, exact agreement of backends, ordering,
degenerate inputs and argument errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import instance_generator as gen
from tests.conftest import backend_device_pairs
from vbkernels._dispatch import INSTANCE_OP_NAMES, load_backend
from vbkernels.instances import decode_instances

CUDA = torch.cuda.is_available()


def _instance_backends():
    """Every (backend, device) pair here whose backend has the instance kernels."""
    return [(b, d) for b, d in backend_device_pairs()
            if set(INSTANCE_OP_NAMES) <= set(load_backend(b).ops)]


PAIRS = _instance_backends()
PAIR_IDS = [f"{b}-{d}" for b, d in PAIRS]


def _blocks(height, width, rects, background=(0, 0, 0)):
    """uint8 image with axis-aligned rectangles (y0, y1, x0, x1, colour), painted in order."""
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[:] = background
    for y0, y1, x0, x1, colour in rects:
        rgb[y0:y1, x0:x1] = colour
    return rgb


def _same(a, b):
    for name, x, y in zip(("labels", "palette", "counts"), a, b):
        x, y = torch.as_tensor(x).cpu(), torch.as_tensor(y).cpu()
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert torch.equal(x, y), name


# --------------------------------------------------------------------------- quality

QUALITY_SEEDS = range(20)


@pytest.fixture(scope="module")
def scenes():
    return [gen.generate(seed) for seed in QUALITY_SEEDS]


def _scores(images, rgbs):
    oracle, decoder = gen.MatchStats(), gen.MatchStats()
    decoded = decode_instances(np.stack(rgbs), backend="torch").labels  # one batched call
    for image, rgb, labels in zip(images, rgbs, decoded):
        oracle.add(gen.oracle_labels(rgb, image.colours), image.labels)
        decoder.add(labels, image.labels)
    return oracle, decoder


def test_quality_png_matches_oracle(scenes):
    oracle, decoder = _scores(scenes, [s.rgb for s in scenes])
    assert decoder.ground_truth > 250  # the seed set really has many instances
    assert decoder.f1 >= oracle.f1 - 0.01, (decoder.f1, oracle.f1)
    assert decoder.mean_iou >= oracle.mean_iou - 0.02, (decoder.mean_iou, oracle.mean_iou)


def test_quality_jpeg90_near_oracle(scenes):
    oracle, decoder = _scores(scenes, [gen.jpeg(s.rgb, 90) for s in scenes])
    assert decoder.f1 >= oracle.f1 - 0.03, (decoder.f1, oracle.f1)
    assert decoder.mean_iou >= oracle.mean_iou - 0.03, (decoder.mean_iou, oracle.mean_iou)


def test_clean_palette_close_to_true_colours(scenes):
    """On PNG input each true colour is found once, within 2 units (interior pixels are
    pure; only nearly pure edge pixels pass the flatness test and nudge the mean)."""
    batch = decode_instances(np.stack([scene.rgb for scene in scenes]))
    for scene, palette, count in zip(scenes, batch.palette, batch.counts):
        assert count == len(scene.colours)
        found = palette[:count].astype(np.float64)
        dist = np.sqrt(((found[:, None] - scene.colours[None].astype(np.float64)) ** 2).sum(-1))
        assert (dist.min(axis=0) <= 2.0).all() and (dist.min(axis=1) <= 2.0).all()


# --------------------------------------------------------------------------- backends


@pytest.fixture(scope="module")
def small_batch():
    images = [gen.generate(seed, height=40, width=56, max_instances=10) for seed in (3, 7, 11)]
    rgb = np.stack([images[0].rgb, gen.jpeg(images[1].rgb, 90), images[2].rgb])
    return torch.from_numpy(rgb)


def _variants(rgb):
    """The same pixels as uint8, float32, float16, channels-first and a strided view."""
    yield "uint8", rgb, "auto"
    yield "float32", rgb.float() / 255, "auto"
    yield "float16", (rgb.double() / 255).half(), "auto"
    yield "chw", rgb.permute(0, 3, 1, 2), "chw"
    wide = torch.zeros(rgb.shape[0], rgb.shape[1], 2 * rgb.shape[2], 3, dtype=rgb.dtype)
    wide[:, :, ::2] = rgb
    yield "strided", wide[:, :, ::2], "hwc"


OTHER_PAIRS = [p for p in PAIRS if p != ("torch", "cpu")]


def test_layout_and_dtype_do_not_change_results(small_batch):
    """float32 (v/255), channels-first and strided views give the uint8 result exactly."""
    expected = decode_instances(small_batch)
    assert int(expected.counts.sum()) >= 10
    for name, rgb, layout in _variants(small_batch):
        if name != "float16":  # float16 cannot hold v/255 exactly: colours move by 1/16
            _same(decode_instances(rgb, layout=layout), expected)


@pytest.mark.parametrize("backend,device", OTHER_PAIRS, ids=[f"{b}-{d}" for b, d in OTHER_PAIRS])
def test_backends_agree_exactly(small_batch, backend, device):
    for name, rgb, layout in _variants(small_batch):
        expected = decode_instances(rgb, layout=layout, backend="torch")
        got = decode_instances(rgb.to(device), layout=layout, backend=backend)
        _same(got, expected)
        assert got.labels.device.type == device, name


@pytest.mark.parametrize("backend,device", PAIRS, ids=PAIR_IDS)
def test_kernel_ops_match_reference(small_batch, backend, device):
    """Histogram and labels/counts of each backend's op equal the torch reference's, with
    NaN pixels, odd sizes (partial tiles) and a colour list that differs per image."""
    from vbkernels.reference import instances as reference

    rgb = small_batch[:, :37, :53].float() / 255
    rgb[0, 5, 7, 1] = float("nan")
    rgb[2, 36, 52] = float("nan")  # the last pixel: no right or lower neighbour
    results = []
    for ops, dev in ((load_backend("torch").ops, "cpu"), (load_backend(backend).ops, device)):
        x = rgb.to(dev)
        hist = [torch.zeros((3, reference.BINS), dtype=torch.int64, device=dev) for _ in range(2)]
        sums = torch.zeros((3, reference.BINS, 3), dtype=torch.int64, device=dev)
        ops["colour_histogram"](x, 192, hist[0], hist[1], sums)
        centres = torch.tensor([[[0, 0, 0], [3200, 800, 800], [800, 3200, 800]],
                                [[0, 0, 0], [800, 800, 3200], [0, 0, 0]],
                                [[0, 0, 0], [0, 0, 0], [0, 0, 0]]], dtype=torch.int32)
        labels = torch.empty((3, 37, 53), dtype=torch.int32, device=dev)
        counts = torch.zeros((3, 4), dtype=torch.int64, device=dev)
        ops["assign_pixels"](x, centres.to(dev), torch.tensor([3, 2, 0], device=dev), 640 ** 2, 0,
                          labels, counts)
        results.append([t.cpu() for t in (*hist, sums, labels, counts)])
    for name, want, got in zip(("count_all", "count_flat", "sum_flat", "labels", "counts"),
                               *results):
        assert torch.equal(want, got), name
    count_all, _, _, labels, counts = results[0]
    assert count_all.sum(dim=1).tolist() == [37 * 53 - 1, 37 * 53, 37 * 53 - 1]
    assert (labels[2] == -1).all() and counts[2].tolist() == [37 * 53, 0, 0, 0]
    assert counts.sum(dim=1).tolist() == [37 * 53] * 3


@pytest.mark.parametrize("backend,device", PAIRS, ids=PAIR_IDS)
def test_split_components_on_backend(backend, device):
    red = (200, 30, 30)
    blue = (30, 30, 200)
    rgb = _blocks(32, 48, [(2, 12, 2, 12, red), (16, 30, 20, 40, red), (2, 10, 30, 46, blue)])
    result = decode_instances(torch.from_numpy(rgb).to(device), backend=backend,
                              min_pixels=16, split_components=True)
    assert result.counts.item() == 3
    labels = result.labels.cpu().numpy()
    # by size: the 14x20 red piece, then the 8x16 blue one, then the 10x10 red piece
    assert (labels[16:30, 20:40] == 1).all() and (labels[2:10, 30:46] == 2).all()
    assert (labels[2:12, 2:12] == 3).all()
    assert result.palette.cpu().tolist()[0] == [200.0, 30.0, 30.0]
    assert result.palette.cpu().tolist()[2] == [200.0, 30.0, 30.0]


def test_batch_equals_one_by_one(small_batch):
    batch = decode_instances(small_batch)
    for i in range(small_batch.shape[0]):
        single = decode_instances(small_batch[i])
        k = int(single.counts)
        assert int(batch.counts[i]) == k
        assert torch.equal(batch.labels[i], single.labels)
        assert torch.equal(batch.palette[i, :k], single.palette)
        assert not batch.palette[i, k:].any()


def test_leading_batch_dims_and_numpy_io(small_batch):
    rgb = small_batch.numpy()
    grid = np.stack([rgb, rgb])  # (2, 3, H, W, 3)
    result = decode_instances(grid)
    assert isinstance(result.labels, np.ndarray) and result.labels.dtype == np.int32
    assert result.labels.shape == grid.shape[:-1]
    assert result.palette.dtype == np.float32 and result.palette.shape[:2] == (2, 3)
    assert result.counts.dtype == np.int64 and result.counts.shape == (2, 3)
    flat = decode_instances(small_batch)
    assert np.array_equal(result.labels[1], flat.labels.numpy())
    assert np.array_equal(result.counts[0], flat.counts.numpy())


def test_deterministic(small_batch):
    _same(decode_instances(small_batch), decode_instances(small_batch.clone()))


# --------------------------------------------------------------------------- rules


def test_ordering_by_count_then_colour():
    a, b, c = (180, 40, 40), (40, 180, 40), (40, 40, 180)
    rgb = _blocks(40, 60, [(0, 20, 0, 20, c), (0, 20, 30, 50, b), (22, 40, 0, 60, a)])
    result = decode_instances(rgb, min_pixels=16)
    # a covers 18x60 pixels; b and c tie at 20x20 and go by colour: c (R=40, G=40) < b
    assert result.counts == 3
    assert result.palette.tolist() == [list(map(float, a)), list(map(float, c)),
                                       list(map(float, b))]
    assert (result.labels[22:40] == 1).all()
    assert (result.labels[0:20, 0:20] == 2).all() and (result.labels[0:20, 30:50] == 3).all()
    assert (result.labels[0:20, 20:30] == 0).all() and (result.labels[0:20, 50:] == 0).all()


def test_many_colours_all_found():
    rng = np.random.default_rng(5)
    colours = gen.random_colours(rng, 60)
    rects = [(10 * (i // 10), 10 * (i // 10) + 10, 10 * (i % 10), 10 * (i % 10) + 10, tuple(c))
             for i, c in enumerate(colours)]
    result = decode_instances(_blocks(60, 100, rects, background=(0, 0, 0)))
    assert result.counts == 60
    assert (result.labels >= 1).all()
    assert {tuple(c) for c in result.palette.tolist()} == {tuple(map(float, c)) for c in colours}


def test_min_pixels_drops_small_instances_exactly():
    red, green = (220, 20, 20), (20, 220, 20)
    rgb = _blocks(30, 30, [(0, 20, 0, 20, red), (24, 29, 24, 29, green)])  # green: 25 pixels
    dropped = decode_instances(rgb, min_pixels=26)
    assert dropped.counts == 1 and (dropped.labels[24:29, 24:29] == -1).all()
    kept = decode_instances(rgb, min_pixels=25)
    assert kept.counts == 2 and (kept.labels[24:29, 24:29] == 2).all()


def test_merge_distance():
    rgb = _blocks(20, 40, [(0, 20, 0, 20, (150, 100, 50)), (0, 20, 20, 40, (160, 100, 50))])
    merged = decode_instances(rgb)  # 10 apart < default merge distance 20
    assert merged.counts == 1 and (merged.labels == 1).all()
    assert merged.palette[0].tolist() == [155.0, 100.0, 50.0]  # the mean of both halves
    separate = decode_instances(rgb, merge_distance=5)
    assert separate.counts == 2
    assert (separate.labels[:, :20] != separate.labels[:, 20:]).all()


def test_max_distance_and_background():
    rgb = _blocks(20, 20, [(0, 10, 0, 20, (200, 200, 200))])
    rgb[15, 5] = (100, 100, 100)  # 173 from white-ish and from black: near no colour
    result = decode_instances(rgb, min_pixels=16)
    assert result.labels[15, 5] == -1 and (result.labels[10:15] == 0).all()
    everything = decode_instances(rgb, min_pixels=16, max_distance=None)
    assert (everything.labels >= 0).all()
    no_background = decode_instances(rgb, min_pixels=16, background=None)
    assert no_background.counts == 2 and (no_background.labels[:10] == 1).all()
    assert no_background.palette.tolist() == [[200.0, 200.0, 200.0], [0.0, 0.0, 0.0]]
    grey = decode_instances(_blocks(8, 8, [], background=(50, 50, 50)), background=(50, 50, 50))
    assert grey.counts == 0 and (grey.labels == 0).all()


def test_nan_pixels_are_minus_one_and_do_not_spread():
    rgb = torch.from_numpy(_blocks(16, 16, [(0, 16, 0, 8, (200, 40, 40))])).float() / 255
    rgb[3, 3, 1] = float("nan")
    rgb[10, 12] = 1.7  # clamped to white: far from red and black
    result = decode_instances(rgb, min_pixels=16)
    assert result.labels[3, 3] == -1 and result.labels[10, 12] == -1
    assert result.counts == 1
    assert (result.labels[:, :8] == 1).sum() == 16 * 8 - 1
    assert (result.labels[:, 8:] == 0).sum() == 16 * 8 - 1


# --------------------------------------------------------------------------- degenerate


def test_only_background():
    result = decode_instances(np.zeros((2, 7, 9, 3), dtype=np.uint8))
    assert result.counts.tolist() == [0, 0] and result.palette.shape == (2, 0, 3)
    assert (result.labels == 0).all()


def test_every_pixel_a_different_colour():
    rng = np.random.default_rng(0)
    codes = rng.choice(1 << 24, size=64 * 64, replace=False)
    rgb = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], -1).astype(np.uint8)
    rgb = rgb.reshape(64, 64, 3)
    result = decode_instances(rgb)
    assert result.counts == 0 and result.palette.shape == (0, 3)
    near_black = np.sqrt((rgb.astype(float) ** 2).sum(-1)) <= 40
    assert np.array_equal(result.labels == 0, near_black)
    assert (result.labels[~near_black] == -1).all()


def test_single_pixel_image():
    rgb = np.array([[[200, 10, 10]]], dtype=np.uint8)
    result = decode_instances(rgb)
    assert result.counts == 0 and result.labels.tolist() == [[-1]]
    alone = decode_instances(rgb, min_pixels=1)
    assert alone.counts == 1 and alone.labels.tolist() == [[1]]
    assert alone.palette.tolist() == [[200.0, 10.0, 10.0]]


@pytest.mark.parametrize("shape", [(0, 5, 6, 3), (2, 0, 6, 3), (2, 5, 0, 3)])
def test_empty_inputs(shape):
    result = decode_instances(torch.zeros(shape, dtype=torch.uint8), split_components=True)
    assert result.labels.shape == shape[:-1] and result.labels.dtype == torch.int32
    assert result.palette.shape == (shape[0], 0, 3) and result.counts.shape == (shape[0],)


def test_split_components_orders_pieces():
    red = (200, 30, 30)
    rgb = _blocks(20, 40, [(0, 5, 0, 5, red), (10, 15, 0, 5, red), (0, 10, 30, 40, red)])
    whole = decode_instances(rgb, min_pixels=16)
    assert whole.counts == 1
    split = decode_instances(rgb, min_pixels=16, split_components=True)
    assert split.counts == 3
    # 10x10 first; the two 5x5 pieces tie on size and colour: first pixel in raster order
    assert (split.labels[0:10, 30:40] == 1).all()
    assert (split.labels[0:5, 0:5] == 2).all() and (split.labels[10:15, 0:5] == 3).all()
    assert split.palette.tolist() == [[200.0, 30.0, 30.0]] * 3


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kwargs,error,words", [
    ({"min_pixels": 0}, ValueError, "min_pixels"),
    ({"min_pixels": 2.5}, ValueError, "min_pixels"),
    ({"max_distance": -1.0}, ValueError, "max_distance"),
    ({"merge_distance": float("nan")}, ValueError, "merge_distance"),
    ({"background": (0, 0)}, ValueError, "background"),
    ({"background": (0, 0, 300)}, ValueError, "background"),
    ({"backend": "numpy"}, RuntimeError, "backend 'numpy' does not implement decode_instances"),
    ({"backend": "nope"}, ValueError, "backend"),
    ({"backend": 3}, TypeError, "backend"),
    ({"layout": "cwh"}, ValueError, "layout"),
])
def test_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        decode_instances(np.zeros((4, 4, 3), dtype=np.uint8), **kwargs)


def test_bad_images():
    with pytest.raises(TypeError, match="rgb"):
        decode_instances(np.zeros((4, 4, 3), dtype=np.int32))
    with pytest.raises(ValueError, match="rgb"):
        decode_instances(np.zeros((4, 4, 4), dtype=np.uint8))
    with pytest.raises(TypeError, match="rgb"):
        decode_instances([[0, 0, 0]])


@pytest.mark.skipif(CUDA, reason="with a GPU the triton backend runs on CUDA tensors")
def test_triton_on_cpu_needs_interpreter():
    """Without a GPU and without TRITON_INTERPRET=1 the triton backend does not load, and
    asking decode_instances for it says what to do."""
    script = ("import numpy as np\n"
              "from vbkernels import decode_instances\n"
              "try:\n"
              "    decode_instances(np.zeros((4, 4, 3), dtype=np.uint8), backend='triton')\n"
              "except RuntimeError as exc:\n"
              "    print('RuntimeError:', exc)\n")
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(root)
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert "RuntimeError:" in done.stdout and "TRITON_INTERPRET" in done.stdout, done.stderr


def test_split_components_without_scipy_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.ndimage", None)
    rgb = _blocks(16, 16, [(0, 8, 0, 8, (200, 30, 30))])
    assert decode_instances(rgb, min_pixels=16).counts == 1  # no scipy needed without split
    with pytest.raises(RuntimeError, match="scipy"):
        decode_instances(rgb, min_pixels=16, split_components=True)


CUSTOM_OP_PAIRS = [(b, d) for b, d in PAIRS
                   if hasattr(load_backend(b).ops["colour_histogram"], "eager_launcher")]


@pytest.mark.parametrize("backend,device", CUSTOM_OP_PAIRS,
                         ids=[f"{b}-{d}" for b, d in CUSTOM_OP_PAIRS])
def test_instance_kernels_are_registered_custom_ops(backend, device):
    """torch.library.opcheck: schema and fake kernel of the two instance kernel ops."""
    from vbkernels.reference import instances as reference

    ops = load_backend(backend).ops
    rgb = torch.randint(0, 256, (2, 3, 5, 3), dtype=torch.uint8, device=device)
    counts = [torch.zeros((2, reference.BINS), dtype=torch.int64, device=device)
              for _ in range(2)]
    sums = torch.zeros((2, reference.BINS, 3), dtype=torch.int64, device=device)
    centres = torch.randint(0, 4081, (2, 3, 3), dtype=torch.int32, device=device)
    labels = torch.empty((2, 3, 5), dtype=torch.int32, device=device)
    pixels = torch.zeros((2, 4), dtype=torch.int64, device=device)
    number = torch.tensor([3, 1], device=device)
    checks = ("test_schema", "test_faketensor")
    torch.library.opcheck(ops["colour_histogram"], (rgb, 192, *counts, sums), test_utils=checks)
    torch.library.opcheck(ops["assign_pixels"], (rgb, centres, number, 640 ** 2, 1, labels,
                                                 pixels), test_utils=checks)
    assert hasattr(torch.ops, f"vbkernels_{backend}")
