"""vbkernels.metrics, set up as each protocol says, against the independent NumPy oracles of
tests/eval_oracles.py (the same oracles the eval command's tests use)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests import eval_oracles as oracle
from vbkernels.metrics import (
    CITYSCAPES_CATEGORIES,
    DepthMetrics,
    NormalMetrics,
    SegmentationMetrics,
    cityscapes_to_train_ids,
    reduce_zero_label,
    to_output_units,
)


def _depth_samples(shape, count, seed, lo=0.5, hi=12.0):
    """(pred, gt, mask) triples: gt with holes and values out of range, noisy predictions
    (some below zero, some far), a random mask."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        gt = rng.uniform(lo, hi, shape)
        gt[rng.random(shape) < 0.05] = 0.0
        pred = np.abs(gt * rng.lognormal(0.0, 0.2, shape) + rng.normal(0, 0.2, shape)) + 0.05
        pred[rng.random(shape) < 0.02] = 30.0
        samples.append((pred, gt, rng.random(shape) < 0.9))
    return samples


def _library(metric: DepthMetrics, samples, crop=None):
    for pred, gt, mask in samples:
        keep = mask & oracle.eval_crop(gt.shape, crop)
        metric.update(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(keep))
    return metric.compute()


def _assert_close(got, want, names, rel=1e-9, abs=1e-12):
    for name in names:
        assert got[name] == pytest.approx(want[name], rel=rel, abs=abs), name


DEPTH_NAMES = ("delta1", "delta2", "delta3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10",
               "silog", "silog_da2", "irmse")  # fmt: skip


@pytest.mark.parametrize("alignment", ["lstsq-affine", "disparity-affine", "none"])
def test_marigold(alignment):
    samples = _depth_samples((12, 16), 3, seed=1)
    want = oracle.marigold(samples, min_depth=1e-3, max_depth=10.0, alignment=alignment)
    metric = DepthMetrics(min_depth=1e-3, max_depth=10.0, alignment=alignment, clamp="after")
    _assert_close(_library(metric, samples), want, DEPTH_NAMES)


def test_marigold_nyu_eigen_crop():
    samples = _depth_samples((480, 640), 1, seed=2, hi=11.0)
    want = oracle.marigold(samples, max_depth=10.0, crop="eigen-nyu")
    metric = DepthMetrics(max_depth=10.0, alignment="lstsq-affine")
    _assert_close(_library(metric, samples, crop="eigen-nyu"), want, DEPTH_NAMES)


@pytest.mark.parametrize("crop", ["garg", "eigen-kitti"])
def test_zoedepth_kitti_crops(crop):
    samples = _depth_samples((352, 1216), 1, seed=3, hi=90.0)
    want = oracle.zoedepth(samples, min_depth=1e-3, max_depth=80.0, crop=crop)
    metric = DepthMetrics(min_depth=1e-3, max_depth=80.0, clamp="before")
    _assert_close(_library(metric, samples, crop=crop), want, DEPTH_NAMES)


def test_garg_and_eigen_kitti_crops_differ_where_they_should():
    garg = oracle.eval_crop((352, 1216), "garg")
    eigen = oracle.eval_crop((352, 1216), "eigen-kitti")
    # Row 120 is inside Eigen's crop (from row 117) but above Garg's (from row 143).
    assert eigen[120, 600] and not garg[120, 600]
    assert garg[300, 600] and eigen[300, 600]


def test_depth_anything_v2_inclusive_range_and_min_pixels():
    samples = _depth_samples((12, 16), 3, seed=4)
    samples[0][1][:] = 0.0  # no valid pixel
    samples[0][1][0, :5] = 3.0  # 5 < 10 valid pixels: skipped
    samples[1][1][0, :4] = 20.0  # on the inclusive bound
    want = oracle.depth_anything_v2(samples, min_depth=1e-3, max_depth=20.0)
    metric = DepthMetrics(
        min_depth=1e-3, max_depth=20.0, range="inclusive", clamp=None, min_valid_pixels=10
    )
    got = _library(metric, samples)
    _assert_close(got, want, DEPTH_NAMES)
    assert got["images"] == want["images"] == 2


@pytest.mark.parametrize("alignment", ["l1-affine", "l1-scale", "none"])
def test_moge(alignment):
    samples = _depth_samples((9, 11), 3, seed=5)
    want = oracle.moge(samples, alignment=alignment)
    metric = DepthMetrics(min_depth=0.0, alignment=alignment, clamp=None)
    got = _library(metric, samples)
    # MoGe divides by g + 1e-6: within 1e-6 of the plain AbsRel for g >= 0.5.
    assert got["abs_rel"] == pytest.approx(want["abs_rel"], abs=1e-6)
    assert got["delta1"] == pytest.approx(want["delta1"], abs=1e-12)


@pytest.mark.parametrize("reduction", ["pixel", "image"])
def test_dsine(reduction):
    rng = np.random.default_rng(6)
    samples = []
    for _ in range(3):
        gt = rng.normal(size=(7, 9, 3))
        gt /= np.linalg.norm(gt, axis=-1, keepdims=True)
        pred = gt + rng.normal(scale=0.3, size=gt.shape)
        pred *= [1, -1, 1]  # the prediction is in OpenGL's frame, the truth in DSINE's
        samples.append((pred, gt, rng.random((7, 9)) < 0.8))
    want = oracle.dsine(samples, pred_frame="opengl", reduction=reduction)
    metric = NormalMetrics(frame="dsine", pred_frame="opengl", reduction=reduction)
    for pred, gt, mask in samples:
        metric.update(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(mask))
    got = to_output_units(metric.compute())
    for name, value in want.items():
        if name != "images":
            # acos (DSINE) against atan2 (vbkernels) and a float32 median buffer.
            assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name


@pytest.mark.parametrize("reduce_zero", [False, True])
def test_mmseg(reduce_zero):
    rng = np.random.default_rng(7)
    num_classes = 6
    samples = []
    for _ in range(3):
        gt = rng.integers(0, num_classes + int(reduce_zero), (10, 12))
        gt[rng.random(gt.shape) < 0.05] = 255
        pred = np.where(
            rng.random(gt.shape) < 0.6, gt - int(reduce_zero), rng.integers(0, 6, gt.shape)
        )
        pred = np.clip(pred, 0, num_classes - 1)
        samples.append((pred, gt, None))
    want = oracle.mmseg(samples, num_classes=num_classes, reduce_zero_label=reduce_zero)
    metric = SegmentationMetrics(num_classes)
    for pred, gt, _ in samples:
        target = reduce_zero_label(gt) if reduce_zero else gt
        metric.update(torch.from_numpy(pred), torch.from_numpy(target))
    got = metric.compute()
    for name in ("miou", "mean_accuracy", "pixel_accuracy"):
        assert got[name] == pytest.approx(want[name], rel=1e-12), name
    assert got["iou"] == pytest.approx(want["iou"], rel=1e-12, nan_ok=True)
    assert got["accuracy"] == pytest.approx(want["accuracy"], rel=1e-12, nan_ok=True)


def test_cityscapes_from_label_ids():
    rng = np.random.default_rng(8)
    samples = []
    for _ in range(2):
        label_ids = rng.integers(0, 34, (10, 14)).astype(np.uint8)  # ignored ids included
        train = cityscapes_to_train_ids(label_ids).astype(np.int64)
        pred = np.where(rng.random(train.shape) < 0.7, train, rng.integers(0, 19, train.shape))
        pred[rng.random(train.shape) < 0.05] = 255  # no class
        samples.append((pred, label_ids, None))
    want = oracle.cityscapes(samples)
    metric = SegmentationMetrics(19, categories=CITYSCAPES_CATEGORIES)
    for pred, label_ids, _ in samples:
        target = cityscapes_to_train_ids(label_ids).astype(np.int64)
        metric.update(torch.from_numpy(pred), torch.from_numpy(target))
    got = metric.compute()
    assert got["miou"] == pytest.approx(want["miou"], rel=1e-12)
    assert got["iou"] == pytest.approx(want["iou"], rel=1e-12, nan_ok=True)
    assert got["miou_category"] == pytest.approx(want["miou_category"], rel=1e-12)
    for name, value in want["category_iou"].items():
        assert got["category_iou"][name] == pytest.approx(value, rel=1e-12, nan_ok=True), name
    assert not math.isnan(got["miou"])
