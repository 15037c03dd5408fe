"""vbkernels.metrics against float64 NumPy and torchmetrics, plus the no-host-sync promise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vbkernels.metrics import (
    DepthMetrics,
    NormalMetrics,
    SegmentationMetrics,
    depth_metrics,
    normal_metrics,
    segmentation_metrics,
)

DEPTH_NAMES = (
    "delta1",
    "delta2",
    "delta3",
    "abs_rel",
    "sq_rel",
    "rmse",
    "rmse_log",
    "log10",
    "silog",
    "silog_eigen",
    "silog_da2",
    "irmse",
)


def _depth_names(n_thresholds):
    return tuple(f"delta{i + 1}" for i in range(n_thresholds)) + DEPTH_NAMES[3:]


# ----------------------------------------------------------------------------- references


def _np_l1_fit(x, y, weight, affine):
    """argmin sum w |s x (+ b) - y| as a linear programme (scipy HiGHS): an exact optimum
    found by a method unrelated to the library's weighted medians."""
    from scipy.optimize import linprog

    n = x.size
    k = 2 if affine else 1
    # Variables: s (, b), then e+ and e- >= 0 with s x + b - y = e+ - e-.
    cost = np.concatenate([np.zeros(k), weight, weight])
    design = np.stack([x, np.ones(n)], axis=1)[:, :k]
    equality = np.concatenate([design, -np.eye(n), np.eye(n)], axis=1)
    bounds = [(None, None)] * k + [(0, None)] * (2 * n)
    solution = linprog(cost, A_eq=equality, b_eq=y, bounds=bounds, method="highs")
    assert solution.status == 0, solution.message
    return solution.x[0], (solution.x[1] if affine else 0.0)


def _np_align(p, g, alignment):
    """Aligned prediction (for the valid pixels given), with the fitted scale and shift."""
    fit = np.isfinite(p)
    p_fit, g_fit = p[fit], g[fit]
    if alignment == "median":
        return p * (np.median(g_fit) / np.median(p_fit))
    if alignment == "lstsq":
        return p * (p_fit @ g_fit / (p_fit @ p_fit))
    if alignment in ("l1-scale", "l1-affine"):
        scale, shift = _np_l1_fit(p_fit, g_fit, 1 / g_fit, alignment == "l1-affine")
        return p * scale + shift
    if alignment == "disparity-affine":
        positive = fit & (p > 0)
        design = np.stack([1 / p[positive], np.ones(positive.sum())], axis=1)
        (scale, shift), *_ = np.linalg.lstsq(design, 1 / g[positive], rcond=None)
        with np.errstate(divide="ignore"):
            disparity = np.where(p > 0, scale / p + shift, np.inf)
        return 1 / np.maximum(disparity, 1e-3)
    design = np.stack([p_fit, np.ones_like(p_fit)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, g_fit, rcond=None)
    return p * scale + shift


def _np_depth_image(p, g, thresholds, silog_lambda):
    """Metrics of one image's valid pixels, textbook formulas in float64."""
    ratio = np.maximum(p / g, g / p)
    d = np.log(p) - np.log(g)
    values = [np.mean(ratio < t) for t in thresholds]
    values += [
        np.mean(np.abs(p - g) / g),
        np.mean((p - g) ** 2 / g),
        np.sqrt(np.mean((p - g) ** 2)),
        np.sqrt(np.mean(d**2)),
        np.mean(np.abs(np.log10(p) - np.log10(g))),
        100 * np.sqrt(np.var(d)),
        np.mean(d**2) - silog_lambda * np.mean(d) ** 2,
        np.sqrt(np.mean(d**2) - 0.5 * np.mean(d) ** 2),
        np.sqrt(np.mean((1 / p - 1 / g) ** 2)),
    ]
    return np.array(values)


def np_depth_metrics(
    pred,
    target,
    mask,
    *,
    min_depth,
    max_depth,
    alignment,
    reduction,
    thresholds=(1.25, 1.25**2, 1.25**3),
    silog_lambda=0.5,
    clamp="after",
    inclusive=False,
    min_valid_pixels=1,
):
    pred = pred.reshape(-1, *pred.shape[-2:]).astype(np.float64)
    target = target.reshape(-1, *target.shape[-2:]).astype(np.float64)
    mask = (
        np.broadcast_to(mask, target.shape).reshape(target.shape)
        if mask is not None
        else np.ones(target.shape, bool)
    )
    hi = np.inf if max_depth is None else max_depth
    per_image, pooled_p, pooled_g = [], [], []
    for p, g, m in zip(pred, target, mask):
        with np.errstate(invalid="ignore"):
            if inclusive:
                in_range = (g >= min_depth) & (g <= hi)
            else:
                in_range = (g > min_depth) & (g < hi)
            valid = m & np.isfinite(g) & in_range & ~np.isnan(p)
        p, g = p[valid], g[valid]
        if p.size < max(min_valid_pixels, 1):
            continue
        if clamp == "before":
            p = np.clip(p, min_depth, hi)
        if alignment:
            p = _np_align(p, g, alignment)
        if clamp == "after":
            p = np.clip(p, min_depth, hi)
        per_image.append(_np_depth_image(p, g, thresholds, silog_lambda))
        pooled_p.append(p)
        pooled_g.append(g)
    names = _depth_names(len(thresholds))
    if reduction == "image":
        return dict(zip(names, np.mean(per_image, axis=0)))
    values = _np_depth_image(
        np.concatenate(pooled_p), np.concatenate(pooled_g), thresholds, silog_lambda
    )
    return dict(zip(names, values))


def np_angles(pred, target):
    """Angle in degrees by arccos of the normalised dot product (float64)."""
    with np.errstate(invalid="ignore", divide="ignore"):  # zero targets; masked by the caller
        p = pred / np.linalg.norm(pred, axis=-1, keepdims=True)
        g = target / np.linalg.norm(target, axis=-1, keepdims=True)
    return np.degrees(np.arccos(np.clip((p * g).sum(-1), -1, 1)))


def random_depth(shape, seed):
    """Ground truth with holes (0, NaN, inf) and predictions with noise, outliers and NaN."""
    rng = np.random.default_rng(seed)
    target = rng.uniform(0.2, 80.0, shape)
    target[rng.random(shape) < 0.05] = 0.0
    target[rng.random(shape) < 0.02] = np.nan
    target[rng.random(shape) < 0.02] = np.inf
    pred = target * rng.lognormal(0.0, 0.3, shape) + rng.normal(0.0, 0.5, shape)
    pred = np.where(np.isfinite(pred), pred, rng.uniform(0.2, 80.0, shape))
    pred[rng.random(shape) < 0.02] = np.nan
    pred[rng.random(shape) < 0.02] = -1.0  # below min_depth: clamped up
    return pred.astype(np.float32), target.astype(np.float32)


# ----------------------------------------------------------------------------- depth


@pytest.mark.parametrize("reduction", ["image", "pixel"])
@pytest.mark.parametrize(
    "alignment",
    [None, "median", "lstsq", "lstsq_shift", "disparity-affine", "l1-scale", "l1-affine"],
)
def test_depth_matches_numpy(alignment, reduction):
    pred, target = random_depth((3, 2, 17, 23), seed=1)
    mask = np.random.default_rng(2).random((17, 23)) < 0.9  # broadcast over the batch dims
    options = dict(min_depth=0.1, max_depth=70.0, alignment=alignment, reduction=reduction)
    metric = DepthMetrics(**options)
    # Two updates of different batch sizes must equal one pass over everything.
    metric.update(torch.from_numpy(pred[:1]), torch.from_numpy(target[:1]), torch.from_numpy(mask))
    metric.update(torch.from_numpy(pred[1:]), torch.from_numpy(target[1:]), torch.from_numpy(mask))
    got = metric.compute()
    want = np_depth_metrics(pred, target, mask, **options)
    for name in DEPTH_NAMES:
        assert got[name] == pytest.approx(want[name], rel=1e-9, abs=1e-12), name
    assert got["images"] == 6
    assert got["valid_pixels"] == int(
        (
            np.broadcast_to(mask, target.shape) & (target > 0.1) & (target < 70) & ~np.isnan(pred)
        ).sum()
    )


@pytest.mark.parametrize("clamp", ["after", "before", None])
@pytest.mark.parametrize("inclusive", [False, True])
@pytest.mark.parametrize("alignment", ["median", "lstsq-affine"])
def test_depth_clamp_range_and_min_pixels_match_numpy(clamp, inclusive, alignment):
    pred, target = random_depth((4, 9, 10), seed=11)
    pred = np.abs(pred) + 0.05  # keep the unclamped logs finite
    target[0, :7] = 0.0  # image 0 keeps few valid pixels and drops out
    target[1, 0, :3] = 0.1  # on the lower bound: kept only by the inclusive range
    options = dict(min_depth=0.1, max_depth=70.0, alignment=alignment)
    for reduction in ("image", "pixel"):
        got = depth_metrics(
            pred, target, reduction=reduction, clamp=clamp, min_valid_pixels=40,
            range="inclusive" if inclusive else "strict", **options,
        )  # fmt: skip
        want = np_depth_metrics(
            pred, target, None, reduction=reduction, clamp=clamp, inclusive=inclusive,
            min_valid_pixels=40, **options,
        )  # fmt: skip
        assert got["images"] == 3
        for name in DEPTH_NAMES:
            assert got[name] == pytest.approx(want[name], rel=1e-9, abs=1e-12), (reduction, name)


def test_depth_median_alignment_even_and_odd_counts():
    # Medians of an even count average the two middle values: p = [1, 2, 3, 10], g = 2p.
    target = torch.tensor([[[2.0, 4.0, 6.0, 20.0]], [[2.0, 4.0, 6.0, 7.0]]], dtype=torch.float64)
    pred = torch.tensor([[[1.0, 2.0, 3.0, 10.0]], [[1.0, 2.0, 3.0, 100.0]]], dtype=torch.float64)
    mask = torch.tensor([[[True, True, True, True]], [[True, True, True, False]]])
    got = depth_metrics(pred, target, mask, alignment="median", reduction="pixel")
    # Image 0: scale = median(g)/median(p) = 5 / 2.5 = 2 -> exact. Image 1 (odd count): 4 / 2.
    assert got["abs_rel"] == pytest.approx(0.0, abs=1e-15)
    assert got["delta1"] == 1.0 and got["valid_pixels"] == 7


def test_depth_thresholds_and_silog_lambda_are_configurable():
    pred, target = random_depth((2, 9, 11), seed=3)
    options = dict(min_depth=0.1, max_depth=None, alignment=None, reduction="image")
    got = depth_metrics(pred, target, thresholds=(1.05, 1.1), silog_lambda=1.0, **options)
    want = np_depth_metrics(pred, target, None, thresholds=(1.05, 1.1), silog_lambda=1.0, **options)
    assert "delta3" not in got
    assert set(got) - {"valid_pixels", "images"} == set(want)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-9), name
    pooled = depth_metrics(
        pred, target, thresholds=(1.05, 1.1), silog_lambda=1.0, **(options | {"reduction": "pixel"})
    )
    # With lambda = 1 the Eigen variant is the variance of d, i.e. (silog / 100)².
    assert pooled["silog_eigen"] == pytest.approx((pooled["silog"] / 100) ** 2, rel=1e-9)


def test_depth_infinite_prediction_is_clamped_by_max_depth():
    target = torch.full((1, 2, 2), 10.0)
    pred = torch.tensor([[[10.0, math.inf], [10.0, 10.0]]])
    assert depth_metrics(pred, target)["rmse"] == math.inf
    got = depth_metrics(pred, target, max_depth=20.0)
    assert got["rmse"] == pytest.approx(math.sqrt(100 / 4))


def test_depth_without_valid_pixels_is_nan_and_reset_forgets():
    metric = DepthMetrics(reduction="pixel")
    assert math.isnan(metric.compute()["abs_rel"])
    metric.update(torch.ones(1, 3, 3), torch.zeros(1, 3, 3))  # target 0 is never valid
    got = metric.compute()
    assert math.isnan(got["abs_rel"]) and got["valid_pixels"] == 0
    metric.update(torch.ones(1, 3, 3), torch.full((1, 3, 3), 2.0))
    assert metric.compute()["abs_rel"] == pytest.approx(0.5)
    metric.reset()
    assert metric.compute()["valid_pixels"] == 0


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: depth_metrics(torch.ones(2, 2), torch.ones(2, 3)), ValueError, "shape"),
        (
            lambda: depth_metrics(torch.ones(2, 2, dtype=torch.int32), torch.ones(2, 2)),
            TypeError,
            "pred",
        ),
        (
            lambda: depth_metrics(torch.ones(2, 2), torch.ones(2, 2), torch.ones(2, 2)),
            TypeError,
            "mask",
        ),
        (
            lambda: depth_metrics(
                torch.ones(2, 2), torch.ones(2, 2), torch.ones(3, 1, dtype=torch.bool)
            ),
            ValueError,
            "mask",
        ),
        (lambda: depth_metrics(torch.ones(4), torch.ones(4)), ValueError, "(..., H, W)"),
        (lambda: DepthMetrics(alignment="mean"), ValueError, "alignment"),
        (lambda: DepthMetrics(reduction="batch"), ValueError, "reduction"),
        (lambda: DepthMetrics(min_depth=5, max_depth=1), ValueError, "max_depth"),
        (lambda: DepthMetrics(min_depth=-1), ValueError, "min_depth"),
        (lambda: DepthMetrics(thresholds=(0.5,)), ValueError, "thresholds"),
        (lambda: depth_metrics([1.0], [1.0]), TypeError, "pred"),
    ],
)
def test_depth_bad_arguments(call, error, words):
    with pytest.raises(error, match=None) as info:
        call()
    assert words in str(info.value)


# ----------------------------------------------------------------------------- normals


def random_normals(shape, seed):
    rng = np.random.default_rng(seed)
    target = rng.normal(size=shape)
    target /= np.linalg.norm(target, axis=-1, keepdims=True)
    pred = target + rng.normal(scale=0.3, size=shape)
    return pred.astype(np.float32), target.astype(np.float32)


def test_normals_match_numpy():
    pred, target = random_normals((4, 13, 19, 3), seed=4)
    target[0, 0, :5] = 0.0  # unlabelled: left out
    pred[1, 2, :3] = np.nan  # NaN prediction: left out
    mask = np.random.default_rng(5).random((4, 13, 19)) < 0.8
    metric = NormalMetrics()
    for i in range(0, 4, 3):  # batches of 3 and 1
        metric.update(
            torch.from_numpy(pred[i : i + 3]),
            torch.from_numpy(target[i : i + 3]),
            torch.from_numpy(mask[i : i + 3]),
        )
    got = metric.compute()
    valid = mask & (np.linalg.norm(target, axis=-1) > 0) & ~np.isnan(pred).any(-1)
    angles = np_angles(pred.astype(np.float64), target.astype(np.float64))[valid]
    assert got["valid_pixels"] == valid.sum()
    assert got["mean"] == pytest.approx(angles.mean(), rel=1e-9)
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean(angles**2)), rel=1e-9)
    assert got["median"] == pytest.approx(np.median(angles), rel=1e-6)
    for t in (5, 7.5, 11.25, 22.5, 30):
        assert got[f"within_{t:g}"] == pytest.approx(100 * np.mean(angles < t), abs=1e-9), t


@pytest.mark.parametrize("count", [1, 2, 5, 6])
def test_normals_median_is_exact_for_odd_and_even_counts(count):
    degrees = np.array([3.0, 40.0, 10.0, 1.0, 25.0, 7.0])[:count]
    target = np.tile([0.0, 0.0, 1.0], (count, 1))
    pred = np.stack(
        [np.sin(np.radians(degrees)), np.zeros(count), np.cos(np.radians(degrees))], axis=1
    )
    got = normal_metrics(torch.from_numpy(pred), torch.from_numpy(target))
    assert got["median"] == pytest.approx(np.median(degrees), rel=1e-6)


def test_normals_small_angles_are_precise_and_zero_prediction_scores_90():
    # acos would return 0 for 1e-4 degrees in float32; atan2 keeps it.
    angle = np.radians(1e-4)
    pred = torch.tensor(
        [[0.0, math.sin(angle), math.cos(angle)], [0.0, 0.0, 0.0]], dtype=torch.float32
    )
    target = torch.tensor([[0.0, 0.0, 2.0], [0.0, 1.0, 0.0]], dtype=torch.float32)
    got = normal_metrics(pred[:1], target[:1])
    assert got["mean"] == pytest.approx(1e-4, rel=1e-3)
    assert normal_metrics(pred[1:], target[1:])["mean"] == 90.0


def test_normals_channel_dim_and_without_median():
    pred, target = random_normals((2, 5, 7, 3), seed=6)
    hwc = normal_metrics(torch.from_numpy(pred), torch.from_numpy(target))
    chw = normal_metrics(
        torch.from_numpy(pred).movedim(-1, 1),
        torch.from_numpy(target).movedim(-1, 1),
        channel_dim=1,
        median=False,
    )
    assert "median" not in chw
    assert chw["mean"] == pytest.approx(hwc["mean"], rel=1e-12)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: normal_metrics(torch.ones(2, 4), torch.ones(2, 4)), ValueError, "3 channels"),
        (lambda: normal_metrics(torch.ones(2, 3), torch.ones(3, 3)), ValueError, "shape"),
        (
            lambda: normal_metrics(torch.ones(2, 3, dtype=torch.uint8), torch.ones(2, 3)),
            TypeError,
            "pred",
        ),
        (
            lambda: normal_metrics(
                torch.ones(2, 3), torch.ones(2, 3), torch.ones(3, dtype=torch.bool)
            ),
            ValueError,
            "mask",
        ),
        (
            lambda: normal_metrics(torch.ones(2, 3), torch.ones(2, 3), channel_dim=2),
            ValueError,
            "channel_dim",
        ),
        (lambda: NormalMetrics(thresholds=(200,)), ValueError, "thresholds"),
    ],
)
def test_normals_bad_arguments(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)


# ----------------------------------------------------------------------------- segmentation


def test_segmentation_matches_torchmetrics_jaccard():
    from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

    num_classes, ignore = 7, 255
    gen = torch.Generator().manual_seed(7)
    target = torch.randint(0, num_classes, (6, 21, 29), generator=gen)
    pred = torch.where(
        torch.rand(target.shape, generator=gen) < 0.6,
        target,
        torch.randint(0, num_classes, target.shape, generator=gen),
    )
    target[torch.rand(target.shape, generator=gen) < 0.1] = ignore
    metric = SegmentationMetrics(num_classes, ignore_index=ignore)
    jaccard = MulticlassJaccardIndex(num_classes, average="none", ignore_index=ignore)
    accuracy = MulticlassAccuracy(num_classes, average="micro", ignore_index=ignore)
    for i in range(0, 6, 4):
        metric.update(pred[i : i + 4], target[i : i + 4])
        jaccard.update(pred[i : i + 4], target[i : i + 4])
        accuracy.update(pred[i : i + 4], target[i : i + 4])
    got = metric.compute()
    want_iou = jaccard.compute()
    # torchmetrics divides in float32.
    assert got["iou"] == pytest.approx(want_iou.tolist(), rel=1e-6)
    assert got["miou"] == pytest.approx(want_iou.mean().item(), rel=1e-6)
    assert got["pixel_accuracy"] == pytest.approx(accuracy.compute().item(), rel=1e-6)
    kept = target != ignore
    want_matrix = torch.bincount(target[kept] * num_classes + pred[kept], minlength=num_classes**2)
    assert torch.equal(got["confusion_matrix"], want_matrix.view(num_classes, num_classes))


def test_segmentation_unassigned_predictions_are_misses_and_absent_classes_are_nan():
    target = torch.tensor([[0, 0, 1, 1, 255]])
    pred = torch.tensor([[0, 255, 1, 0, 1]])  # 255 = decoder's "too far from the palette"
    got = segmentation_metrics(pred, target, num_classes=3)
    # class 0: TP 1, FN 1 (unassigned), FP 1 -> 1/3; class 1: TP 1, FN 1 -> 1/2; class 2 absent.
    assert got["iou"][:2] == pytest.approx([1 / 3, 1 / 2])
    assert math.isnan(got["iou"][2])
    assert got["miou"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert got["pixel_accuracy"] == pytest.approx(2 / 4)
    assert got["unassigned"] == [1, 0, 0] and got["labelled_pixels"] == 4


def test_segmentation_mask_and_bad_targets():
    target = torch.tensor([[0, 1, 2]])
    pred = torch.tensor([[0, 0, 2]])
    got = segmentation_metrics(pred, target, 3, mask=torch.tensor([True, False, True]))
    assert got["miou"] == 1.0 and got["labelled_pixels"] == 2
    metric = SegmentationMetrics(2, ignore_index=None)
    metric.update(pred, target)  # label 2 is out of range: only found at compute()
    with pytest.raises(ValueError, match="outside"):
        metric.compute()


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: SegmentationMetrics(0), ValueError, "num_classes"),
        (lambda: SegmentationMetrics(5, ignore_index=3), ValueError, "ignore_index"),
        (
            lambda: segmentation_metrics(torch.zeros(2), torch.zeros(2, dtype=torch.long), 3),
            TypeError,
            "pred",
        ),
        (
            lambda: segmentation_metrics(
                torch.zeros(2, dtype=torch.long), torch.zeros(3, dtype=torch.long), 3
            ),
            ValueError,
            "shape",
        ),
    ],
)
def test_segmentation_bad_arguments(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)


# ----------------------------------------------------------------------------- no host sync

# Ops that read a device value back to the host (or, like bincount and nonzero, size their
# output from the data, which needs that read-back on CUDA).
_SYNCING_OPS = {
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.nonzero.default,
    torch.ops.aten.masked_select.default,
    torch.ops.aten.bincount.default,
    torch.ops.aten._unique2.default,
}


_INDEXING_OPS = {
    torch.ops.aten.index.Tensor,
    torch.ops.aten.index_put.default,
    torch.ops.aten.index_put_.default,
}


def _has_bool_index(args) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)


class _ForbidSync(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        # Boolean-mask indexing sizes its output from the mask: a nonzero() and a sync on CUDA.
        if func in _SYNCING_OPS or (func in _INDEXING_OPS and _has_bool_index(args)):
            raise AssertionError(f"update() called {func}, which synchronises with the device")
        return func(*args, **(kwargs or {}))


def _updates(device):
    pred, target = (torch.from_numpy(a).to(device) for a in random_depth((2, 8, 9), seed=8))
    normal_pred, normal_target = (
        torch.from_numpy(a).to(device) for a in random_normals((2, 8, 9, 3), seed=9)
    )
    gen = torch.Generator().manual_seed(10)
    labels = torch.randint(0, 5, (2, 8, 9), generator=gen).to(device)
    mask = (torch.rand(2, 8, 9, generator=gen) < 0.9).to(device)
    calls = [
        (DepthMetrics(alignment=a, reduction=r, min_valid_pixels=40), pred, target, mask)
        for a in (
            None,
            "median",
            "lstsq",
            "lstsq_shift",
            "disparity-affine",
            "l1-scale",
            "l1-affine",
        )
        for r in ("image", "pixel")
    ]
    calls.append((NormalMetrics(), normal_pred, normal_target, mask))
    image_normals = NormalMetrics(reduction="image", frame="dsine")
    calls.append((image_normals, normal_pred, normal_target, mask))
    calls.append((SegmentationMetrics(5), labels, labels.flip(-1), mask))
    categories = {"low": (0, 1), "high": (2, 3, 4)}
    calls.append((SegmentationMetrics(5, categories=categories), labels, labels.flip(-1), mask))
    return calls


def _raise(*args, **kwargs):
    raise AssertionError("update() read a value back to the host")


def test_update_never_reads_back_to_the_host(monkeypatch):
    calls = _updates("cpu")
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, _raise)
    with _ForbidSync():
        for metric, pred, target, mask in calls:
            metric.update(pred, target, mask)
            metric.update(pred, target, mask)
    monkeypatch.undo()
    _assert_same_as_unwatched_cpu_run(calls)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_update_never_synchronises_on_cuda():
    calls = _updates("cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for metric, pred, target, mask in calls:
            metric.update(pred, target, mask)
            metric.update(pred, target, mask)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    _assert_same_as_unwatched_cpu_run(calls)


def _assert_same_as_unwatched_cpu_run(calls):
    """The state built under watch computes what a plain CPU run of the same updates does."""
    for (metric, *_), (cpu_metric, pred, target, mask) in zip(calls, _updates("cpu")):
        cpu_metric.update(pred, target, mask)
        cpu_metric.update(pred, target, mask)
        got, want = metric.compute(), cpu_metric.compute()
        assert got.keys() == want.keys()
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-9, nan_ok=True), key
            elif isinstance(value, torch.Tensor):
                assert torch.equal(got[key], value), key
            else:
                assert got[key] == pytest.approx(value, nan_ok=True), key
