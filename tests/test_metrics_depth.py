"""Depth metrics, worked by hand: alignment names, clamp order, valid range, minimum valid
pixels, iRMSE, Depth Anything V2's SILog and per-image results."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vbkernels.metrics import DepthMetrics, depth_metrics


def _t(values):
    return torch.tensor(values, dtype=torch.float64)


def test_irmse_and_silog_da2_by_hand():
    # d = [ln 2, 0]: mean d² = ln²2 / 2, mean d = ln 2 / 2.
    got = depth_metrics(_t([[2.0, 2.0]]), _t([[1.0, 2.0]]))
    assert got["irmse"] == pytest.approx(math.sqrt((0.5**2 + 0) / 2), rel=1e-12)
    assert got["silog_da2"] == pytest.approx(math.log(2) * math.sqrt(3 / 8), rel=1e-12)
    # The KITTI silog is 100 * sqrt(Var d) = 100 * ln 2 / 2.
    assert got["silog"] == pytest.approx(100 * math.log(2) / 2, rel=1e-12)


def test_strict_and_inclusive_range():
    # g at exactly min_depth and max_depth: left out by "strict", kept by "inclusive".
    target = _t([[1.0, 5.0, 10.0]])
    pred = _t([[2.0, 5.0, 10.0]])
    strict = depth_metrics(pred, target, min_depth=1.0, max_depth=10.0)
    inclusive = depth_metrics(pred, target, min_depth=1.0, max_depth=10.0, range="inclusive")
    assert strict["valid_pixels"] == 1 and strict["abs_rel"] == 0.0
    assert inclusive["valid_pixels"] == 3
    assert inclusive["abs_rel"] == pytest.approx((1.0 + 0 + 0) / 3)


def test_clamp_before_after_and_none():
    pred, target = _t([[1.0, 30.0]]), _t([[2.0, 20.0]])
    options = dict(min_depth=0.5, max_depth=25.0, alignment="median")
    after = depth_metrics(pred, target, **options)  # scale 11 / 15.5, then clamp (no effect)
    before = depth_metrics(pred, target, clamp="before", **options)  # 30 -> 25, scale 11 / 13
    s_after, s_before = 11 / 15.5, 11 / 13
    assert after["abs_rel"] == pytest.approx(
        (abs(s_after - 2) / 2 + abs(30 * s_after - 20) / 20) / 2, rel=1e-12
    )
    assert before["abs_rel"] == pytest.approx(
        (abs(s_before - 2) / 2 + abs(25 * s_before - 20) / 20) / 2, rel=1e-12
    )
    metric = dict(min_depth=0.5, max_depth=25.0)
    assert depth_metrics(pred, target, **metric)["abs_rel"] == pytest.approx((0.5 + 0.25) / 2)
    assert depth_metrics(pred, target, clamp=None, **metric)["abs_rel"] == pytest.approx(
        (0.5 + 0.5) / 2
    )


def test_min_valid_pixels_drops_small_images_and_per_image_says_so():
    target = _t([[[1.0, 2.0, 4.0]], [[2.0, 0.0, 0.0]]])  # image 1 has one valid pixel
    pred = _t([[[1.0, 2.0, 4.0]], [[4.0, 1.0, 1.0]]])
    metric = DepthMetrics(min_valid_pixels=2)
    metric.update(pred, target)
    got = metric.compute()
    assert got["images"] == 1 and got["valid_pixels"] == 3 and got["abs_rel"] == 0.0
    pooled = depth_metrics(pred, target, min_valid_pixels=2, reduction="pixel")
    assert pooled["valid_pixels"] == 3 and pooled["abs_rel"] == 0.0
    rows = metric.per_image()
    assert [r["counted"] for r in rows] == [True, False]
    assert [r["valid_pixels"] for r in rows] == [3, 1]
    assert rows[1]["abs_rel"] == 1.0  # reported, though it does not count
    assert depth_metrics(pred, target)["abs_rel"] == pytest.approx(0.5)  # default: counts


def test_per_image_reports_fitted_scale_and_shift():
    g = _t([[[1.0, 2.0, 3.0, 5.0]], [[2.0, 4.0, 6.0, 8.0]]])
    p = torch.stack([(g[0] - 1) / 2, g[1] / 4])  # image 0: g = 2p + 1; image 1: g = 4p
    metric = DepthMetrics(alignment="lstsq-affine")
    metric.update(p, g)
    rows = metric.per_image()
    assert rows[0]["scale"] == pytest.approx(2.0) and rows[0]["shift"] == pytest.approx(1.0)
    assert rows[1]["scale"] == pytest.approx(4.0) and rows[1]["shift"] == pytest.approx(0.0)
    assert metric.compute()["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert set(rows[0]) >= set(metric.names) | {"valid_pixels", "counted", "scale", "shift"}
    plain = DepthMetrics()
    plain.update(p, g)
    assert [(r["scale"], r["shift"]) for r in plain.per_image()] == [(1.0, 0.0), (1.0, 0.0)]


def test_old_alignment_names_are_aliases():
    rng = np.random.default_rng(0)
    g = torch.from_numpy(rng.uniform(1, 10, (2, 5, 6)))
    p = g * torch.from_numpy(rng.uniform(0.8, 1.2, (2, 5, 6))) + 0.3
    assert depth_metrics(p, g, alignment="lstsq_shift") == depth_metrics(
        p, g, alignment="lstsq-affine"
    )
    assert depth_metrics(p, g, alignment=None) == depth_metrics(p, g, alignment="none")
    assert DepthMetrics(alignment="lstsq_shift").alignment == "lstsq-affine"


def test_l1_scale_is_the_weighted_median_by_hand():
    # sum |s - g| / g over g = 1, 2, 10 (p = 1): weights 1, 1/2, 1/10 -> the minimum is s = 1.
    metric = DepthMetrics(alignment="l1-scale")
    metric.update(_t([[1.0, 1.0, 1.0]]), _t([[1.0, 2.0, 10.0]]))
    assert metric.per_image()[0]["scale"] == 1.0


def test_l1_affine_ignores_an_outlier_that_least_squares_follows():
    p = _t([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    g = 2 * p + 1
    g[0, -1] = 100.0
    l1 = DepthMetrics(alignment="l1-affine")
    l1.update(p, g)
    row = l1.per_image()[0]
    assert row["scale"] == pytest.approx(2.0, rel=1e-9)
    assert row["shift"] == pytest.approx(1.0, rel=1e-9)
    lsq = DepthMetrics(alignment="lstsq-affine")
    lsq.update(p, g)
    assert abs(lsq.per_image()[0]["scale"] - 2.0) > 1.0


def test_disparity_affine_recovers_an_affine_disparity_and_floors_it():
    g = _t([[1.0, 2.0, 4.0]])
    p = 2.0 / (1.0 / g + 0.1)  # 1/g = (1/p) * 2 - 0.1
    metric = DepthMetrics(alignment="disparity-affine")
    metric.update(p, g)
    row = metric.per_image()[0]
    assert row["scale"] == pytest.approx(2.0) and row["shift"] == pytest.approx(-0.1)
    assert row["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    # A far pixel whose aligned disparity is negative: raised to 1e-3, depth 1000 m, then
    # clamped to max_depth = 50 by the clamp after alignment.
    p2, g2 = _t([[1.0, 1.5, 2.0, 1e6]]), _t([[1.0, 2.0, 10.0, 40.0]])
    fitted = DepthMetrics(alignment="disparity-affine", max_depth=50.0)
    fitted.update(p2, g2)
    row = fitted.per_image()[0]
    s, b = row["scale"], row["shift"]
    assert s / 1e6 + b < 0
    aligned = [1 / (s / x + b) for x in (1.0, 1.5, 2.0)] + [50.0]
    want = np.mean(np.abs(np.array(aligned) - g2.numpy()[0]) / g2.numpy()[0])
    assert row["abs_rel"] == pytest.approx(want, rel=1e-12)
    unclamped = depth_metrics(p2, g2, alignment="disparity-affine", clamp=None, max_depth=50.0)
    aligned[-1] = 1000.0
    want = np.mean(np.abs(np.array(aligned) - g2.numpy()[0]) / g2.numpy()[0])
    assert unclamped["abs_rel"] == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(
    "options, words",
    [
        (dict(alignment="affine"), "alignment"),
        (dict(clamp="middle"), "clamp"),
        (dict(range="open"), "range"),
        (dict(min_valid_pixels=-1), "min_valid_pixels"),
        (dict(min_valid_pixels=2.5), "min_valid_pixels"),
        (dict(min_disparity=0), "min_disparity"),
    ],
)
def test_bad_options_name_themselves(options, words):
    with pytest.raises(ValueError, match=words):
        DepthMetrics(**options)
