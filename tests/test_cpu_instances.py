"""decode_instances on the compiled ``cpu`` backend: bit-identical to the torch reference.

The kernels (``vbkernels/cpu/instances.py`` over ``csrc/cpu/instances.cpp``) are compared with
``vbkernels/reference/instances.py`` step by step (histogram, labels, counts) and end to end
through ``decode_instances`` on generated instance images, clean and JPEG-degraded, in every
image dtype and layout and on strided views.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests import instance_generator as gen
from vbkernels.cpu import instances as cpu_ops
from vbkernels.instances import FLAT_TOLERANCE, decode_instances
from vbkernels.reference import instances as ref

TOLERANCE_Q = int(FLAT_TOLERANCE * ref.STEPS)


def _same(a, b):
    for name, x, y in zip(("labels", "palette", "counts"), a, b):
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert torch.equal(x, y), name


def _scene_batch(seeds, jpeg_quality=None) -> torch.Tensor:
    images = []
    for seed in seeds:
        rgb = gen.generate(seed, height=72, width=100).rgb
        images.append(gen.jpeg(rgb, jpeg_quality) if jpeg_quality else rgb)
    return torch.from_numpy(np.stack(images))


@pytest.fixture(scope="module")
def scenes():
    return _scene_batch(range(4))


def _with_nans(rgb: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    x = (rgb.to(torch.float64) / 255).to(dtype)
    x[0, 3, 5, 1] = float("nan")
    x[1, 10:12, 20:30, 0] = float("nan")
    x[2, 0, 0, 2] = 1.5  # clamped
    return x


# --------------------------------------------------------------------------- kernels


def _histograms(ops, rgb, accumulators=None):
    n = rgb.shape[0]
    if accumulators is None:
        accumulators = (torch.zeros((n, ref.BINS), dtype=torch.int64),
                        torch.zeros((n, ref.BINS), dtype=torch.int64),
                        torch.zeros((n, ref.BINS, 3), dtype=torch.int64))
    ops.colour_histogram(rgb, TOLERANCE_Q, *accumulators)
    return accumulators


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.bfloat16, torch.float32,
                                   torch.float64])
def test_histogram_matches_reference(scenes, dtype):
    rgb = scenes if dtype == torch.uint8 else _with_nans(scenes, dtype)
    for a, b in zip(_histograms(cpu_ops, rgb), _histograms(ref, rgb)):
        assert torch.equal(a, b)


def test_histogram_strided_view_and_non_contiguous_accumulators(scenes):
    view = scenes.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)[:, 1:-2, ::3]
    n = view.shape[0]
    # Accumulators that already hold counts, seen through transposed views: added into.
    start = [torch.randint(0, 5, (ref.BINS, n), dtype=torch.int64).t(),
             torch.randint(0, 5, (ref.BINS, n), dtype=torch.int64).t(),
             torch.randint(0, 5, (3, ref.BINS, n), dtype=torch.int64).permute(2, 1, 0)]
    mine = _histograms(cpu_ops, view, [t.clone() for t in start])
    theirs = _histograms(ref, view, [t.contiguous() for t in start])  # views need contiguous
    for a, b in zip(mine, theirs):
        assert torch.equal(a, b)


def _assign(ops, rgb, centres, num, max_d2, first_label):
    labels = torch.full(rgb.shape[:3], 7, dtype=torch.int32)
    counts = torch.zeros((rgb.shape[0], centres.shape[1] + 1), dtype=torch.int64)
    ops.assign_pixels(rgb, centres, num, max_d2, first_label, labels, counts)
    return labels, counts


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.float32, torch.float64])
def test_assign_matches_reference(scenes, dtype):
    rgb = scenes if dtype == torch.uint8 else _with_nans(scenes, dtype)
    gen_ = torch.Generator().manual_seed(3)
    centres = torch.randint(0, ref.Q_MAX + 1, (rgb.shape[0], 23, 3), generator=gen_,
                            dtype=torch.int32)
    centres[:, 5] = centres[:, 2]  # duplicate colours: ties go to the lower index
    num = torch.tensor([23, 0, 6, 1])
    for max_d2, first_label in ((ref.Q_MAX ** 2, 0), ((40 * ref.STEPS) ** 2, 1),
                                (torch.iinfo(torch.int32).max, 1)):
        mine = _assign(cpu_ops, rgb, centres, num, max_d2, first_label)
        theirs = _assign(ref, rgb, centres, num, max_d2, first_label)
        assert torch.equal(mine[0], theirs[0]) and torch.equal(mine[1], theirs[1])


def test_assign_without_centres_and_into_a_strided_label_view(scenes):
    view = scenes[:, ::2, 1:]
    for k in (0, 4):
        centres = torch.arange(view.shape[0] * k * 3, dtype=torch.int32) * 97
        centres = centres.reshape(view.shape[0], k, 3)
        num = torch.full((view.shape[0],), k)
        outs = []
        for ops in (cpu_ops, ref):
            labels = torch.full((view.shape[2], view.shape[0], view.shape[1]), 9,
                                dtype=torch.int32).permute(1, 2, 0)
            counts = torch.ones((k + 1, view.shape[0]), dtype=torch.int64).t()
            ops.assign_pixels(view, centres, num, 10 ** 6, 1, labels, counts)
            outs.append((labels, counts))
        assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("quality", [None, 75])
def test_decode_instances_bit_identical_to_torch(quality):
    rgb = _scene_batch(range(10, 14), quality)
    _same(decode_instances(rgb, backend="cpu"), decode_instances(rgb, backend="torch"))


def test_decode_instances_options_bit_identical_to_torch(scenes):
    for kwargs in ({"background": None}, {"max_distance": None},
                   {"min_pixels": 400, "merge_distance": 70.0},
                   {"background": (255, 255, 255), "min_pixels": 1, "max_distance": 25.0}):
        _same(decode_instances(scenes, backend="cpu", **kwargs),
              decode_instances(scenes, backend="torch", **kwargs))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_decode_instances_float_channels_first_bit_identical(scenes, dtype):
    rgb = _with_nans(scenes, dtype).permute(0, 3, 1, 2)  # a channels-first view
    _same(decode_instances(rgb, backend="cpu"), decode_instances(rgb, backend="torch"))


def test_decode_instances_strided_views_and_numpy(scenes):
    for view in (scenes[:, 3:, ::2], scenes.flip(0)[:, :, 5:-5], scenes[1]):
        _same(decode_instances(view, backend="cpu"), decode_instances(view, backend="torch"))
    out = decode_instances(scenes.numpy(), backend="cpu")
    assert isinstance(out.labels, np.ndarray)
    _same(out, decode_instances(scenes.numpy(), backend="torch"))


def test_decode_instances_empty_batches():
    for shape in ((0, 10, 12, 3), (2, 0, 12, 3), (3, 5, 0, 3)):
        rgb = torch.zeros(shape, dtype=torch.uint8)
        _same(decode_instances(rgb, backend="cpu"), decode_instances(rgb, backend="torch"))


def test_decode_instances_many_candidates_bit_identical():
    """Hundreds of small flat patches: more histogram peaks than MAX_CANDIDATES, chains of
    close colours in the merge, colours dropped under min_pixels and relabelled."""
    gen_ = torch.Generator().manual_seed(5)
    patches = torch.randint(0, 256, (2, 40, 48, 3), dtype=torch.uint8, generator=gen_)
    rgb = patches.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)  # 4x4 patches
    for kwargs in ({"min_pixels": 4, "merge_distance": 6.0, "max_distance": 12.0},
                   {"min_pixels": 16, "merge_distance": 30.0, "background": None}):
        _same(decode_instances(rgb, backend="cpu", **kwargs),
              decode_instances(rgb, backend="torch", **kwargs))
