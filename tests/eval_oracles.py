"""Independent NumPy implementations of each reference's evaluation, for the eval tests.

Nothing here imports vbkernels: each function re-derives one anchor's formulas from its
evaluation code (cited per function) so that a test can check ``vbkernels eval`` /
``vbkernels.metrics`` against it. Every function takes a list of ``(pred, gt, mask)``
NumPy arrays of one sample each (``mask`` may be None; ``pred`` already at the ground
truth's resolution, in the ground truth's frame unless a ``pred_frame`` says otherwise)
and returns a dict with vbkernels.metrics' names, in the eval output's units: every ratio
(delta_i, abs_rel, IoU, accuracies, within_T) is a fraction, angles are degrees, rmse is
metres, irmse 1/m, silog keeps its factor 100.

Protocol choices (what each reference does; "preset" = decided by the dataset loader):

========== ============ ========= ================ ============== ========= ====== ==========
protocol   crop         range     clamp            alignment      reduction min px resize
========== ============ ========= ================ ============== ========= ====== ==========
marigold   NYU Eigen    strict    after alignment  lstsq-affine   image     1 (a)  given at
           [45:471,     g in      to [min, max],   (least_square;                  GT size
           41:601];     (min,max) then >= 1e-6     disparity-                      (npy)
           KITTI KB +                              affine for DA-
           Eigen/Garg                              style models)
zoedepth   NYU Eigen;   strict    before (no       none (metric)  image     1 (a)  bilinear,
           KITTI Garg   (min,max) alignment);                                      align_
           (or Eigen)             inf->max,                                        corners
                                  NaN->min                                         =True
depth-     none in the  inclusive none             none (metric)  image     10     bilinear,
anything-  metric;      [min,max]                                                  align_
v2         preset's                                                                corners
           loader                                                                  =True
moge       none (GT     mask      none             l1-affine,     image     1 (a)  nearest
           mask)        only                       l1-scale or                     (mask-
                                                   none; w = 1/g                   aware)
dsine      none (GT     valid     -                - (frame: x    pixel     -      bilinear
           mask: raw    normal                     right, y down,                  + renorm.
           pixel not                               z to camera)
           black)
mmseg      none         ignore    -                -              dataset   -      bilinear
                        index 255                                 (one                logits,
                        (ADE20K:                                  matrix)          argmax
                        reduce_
                        zero_
                        label)
cityscapes none         labelIds  -                -              dataset   -      none
                        without                                   (one             (full
                        train id                                  matrix)          res.)
                        ignored
========== ============ ========= ================ ============== ========= ====== ==========

(a) the reference has no minimum: an image without valid pixels yields NaN there; here it
is skipped, which only differs on images that the reference would turn into NaN.

Known differences between a reference and its oracle, kept on purpose: MoGe fits its L1
alignments on a 64x64 mask-aware nearest resize of the image (moge/test/metrics.py); the
oracle fits on every valid pixel, as vbkernels does. MoGe's disparity alignment (floored
at 1 / max(gt)) is not covered.
"""

from __future__ import annotations

import math

import numpy as np

# --------------------------------------------------------------------------- shared pieces


def eval_crop(shape, crop: str | None) -> np.ndarray:
    """The bool evaluation mask of a crop, for a ground truth of ``shape`` (H, W).

    ``"eigen-nyu"``: rows 45:471, columns 41:601 of a 480x640 NYUv2 frame (ZoeDepth
    zoedepth/utils/misc.py ``compute_metrics``; Marigold src/dataset/nyu_dataset.py).
    ``"garg"`` / ``"eigen-kitti"``: the KITTI crops as fractions of the (KB-cropped) frame,
    ZoeDepth's ``compute_metrics`` (Garg: rows 0.40810811..0.99189189, columns
    0.03594771..0.96405229; Eigen: rows 0.3324324..0.91351351, columns
    0.0359477..0.96405229), truncated to int as there.
    """
    h, w = shape
    mask = np.zeros(shape, dtype=bool)
    if crop is None:
        mask[:] = True
    elif crop == "eigen-nyu":
        if shape != (480, 640):
            raise ValueError(f"the NYUv2 Eigen crop needs a 480x640 frame, got {shape}")
        mask[45:471, 41:601] = True
    elif crop == "garg":
        mask[
            int(0.40810811 * h) : int(0.99189189 * h), int(0.03594771 * w) : int(0.96405229 * w)
        ] = True
    elif crop == "eigen-kitti":
        mask[int(0.3324324 * h) : int(0.91351351 * h), int(0.0359477 * w) : int(0.96405229 * w)] = (
            True
        )
    else:
        raise ValueError(f"unknown crop {crop!r}")
    return mask


def kb_crop(array: np.ndarray) -> np.ndarray:
    """KITTI's benchmark crop (BTS/ZoeDepth ``do_kb_crop``): the bottom 352 rows and the
    middle 1216 columns."""
    h, w = array.shape[:2]
    top, left = h - 352, (w - 1216) // 2
    return array[top : top + 352, left : left + 1216]


def _depth_errors(p: np.ndarray, g: np.ndarray) -> dict:
    """The depth metric set on matching 1-D arrays of valid pixels (float64)."""
    ratio = np.maximum(p / g, g / p)
    log_diff = np.log(p) - np.log(g)
    out = {f"delta{i}": float(np.mean(ratio < 1.25**i)) for i in (1, 2, 3)}
    out["abs_rel"] = float(np.mean(np.abs(p - g) / g))
    out["sq_rel"] = float(np.mean((p - g) ** 2 / g))
    out["rmse"] = float(np.sqrt(np.mean((p - g) ** 2)))
    out["rmse_log"] = float(np.sqrt(np.mean(log_diff**2)))
    out["log10"] = float(np.mean(np.abs(np.log10(p) - np.log10(g))))
    out["silog"] = float(100 * np.sqrt(np.mean(log_diff**2) - np.mean(log_diff) ** 2))
    out["silog_da2"] = float(np.sqrt(np.mean(log_diff**2) - 0.5 * np.mean(log_diff) ** 2))
    out["irmse"] = float(np.sqrt(np.mean((1 / p - 1 / g) ** 2)))
    return out


def _average(rows: list[dict]) -> dict:
    if not rows:
        return {}
    out = {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
    out["images"] = len(rows)
    return out


def _as_mask(mask, shape) -> np.ndarray:
    return np.ones(shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)


# --------------------------------------------------------------------------- depth


def marigold(samples, *, min_depth=1e-3, max_depth=10.0, alignment="lstsq-affine", crop=None):
    """prs-eth/Marigold eval.py with src/util/alignment.py and src/util/metric.py.

    Valid: ``mask & (g > min) & (g < max)`` inside the crop (the dataset's
    ``_get_valid_mask``). Alignment on the valid pixels: ``"lstsq-affine"``
    (``align_depth_least_square``: ``np.linalg.lstsq`` of ``[p, 1]`` against ``g``),
    ``"disparity-affine"`` (``least_square_disparity``: the same fit between ``1/p`` on
    ``p > 0`` and ``1/g``, aligned disparity clipped to >= 1e-3, depth = 1/disparity) or
    ``"none"``. Then ``clip(p, min, max)`` and ``clip(p, 1e-6)``; metrics per image, mean
    over images (``MetricTracker``)."""
    rows = []
    for pred, gt, mask in samples:
        p, g = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
        valid = _as_mask(mask, g.shape) & eval_crop(g.shape, crop)
        with np.errstate(invalid="ignore"):
            valid &= (g > min_depth) & (g < max_depth)
        if not valid.any():
            continue
        if alignment == "lstsq-affine":
            design = np.stack([p[valid], np.ones(valid.sum())], axis=1)
            (scale, shift), *_ = np.linalg.lstsq(design, g[valid], rcond=None)
            p = p * scale + shift
        elif alignment == "disparity-affine":
            with np.errstate(divide="ignore"):
                disparity_pred = np.where(p > 0, 1 / np.where(p > 0, p, 1), 0)
            fit = valid & (p > 0)
            design = np.stack([disparity_pred[fit], np.ones(fit.sum())], axis=1)
            (scale, shift), *_ = np.linalg.lstsq(design, 1 / g[fit], rcond=None)
            aligned = np.clip(disparity_pred * scale + shift, 1e-3, None)
            # A prediction of 0 has no disparity: it stays depth 0 (clipped to min below).
            p = np.where(p > 0, 1 / aligned, 0.0)
        elif alignment != "none":
            raise ValueError(f"Marigold has no alignment {alignment!r}")
        p = np.clip(np.clip(p, min_depth, max_depth), 1e-6, None)
        rows.append(_depth_errors(p[valid], g[valid]))
    return _average(rows)


def zoedepth(samples, *, min_depth=1e-3, max_depth=10.0, crop=None):
    """isl-org/ZoeDepth zoedepth/utils/misc.py ``compute_metrics`` / ``compute_errors``.

    The prediction is clamped first (``p < min -> min``, ``p > max -> max``, inf -> max,
    NaN -> min); valid: ``mask & (g > min) & (g < max)`` inside the crop; no alignment;
    metrics per image, mean over images (``RunningAverageDict``)."""
    rows = []
    for pred, gt, mask in samples:
        p, g = np.array(pred, np.float64), np.asarray(gt, np.float64)
        p[p < min_depth] = min_depth
        p[p > max_depth] = max_depth
        p[np.isinf(p)] = max_depth
        p[np.isnan(p)] = min_depth
        with np.errstate(invalid="ignore"):
            valid = (g > min_depth) & (g < max_depth)
        valid &= _as_mask(mask, g.shape) & eval_crop(g.shape, crop)
        if not valid.any():
            continue
        rows.append(_depth_errors(p[valid], g[valid]))
    return _average(rows)


def depth_anything_v2(samples, *, min_depth=1e-3, max_depth=20.0, min_valid_pixels=10):
    """DepthAnything/Depth-Anything-V2 metric_depth/train.py (validation loop) and
    metric_depth/util/metric.py ``eval_depth``.

    Valid: ``mask & (g >= min) & (g <= max)`` (inclusive); an image with fewer than 10
    valid pixels is skipped; no clamp, no alignment; ``silog`` there is
    ``sqrt(mean(d²) - 0.5 mean(d)²)`` (``silog_da2`` here); mean over images."""
    rows = []
    for pred, gt, mask in samples:
        p, g = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
        with np.errstate(invalid="ignore"):
            valid = _as_mask(mask, g.shape) & (g >= min_depth) & (g <= max_depth)
        if valid.sum() < min_valid_pixels:
            continue
        rows.append(_depth_errors(p[valid], g[valid]))
    return _average(rows)


def _weighted_median(values, weights):
    """Smallest value whose cumulative weight reaches half the total (values sorted)."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return values[order][np.searchsorted(cumulative, cumulative[-1] / 2)]


def _l1_cost(p, g, w, scale, shift):
    return float(np.sum(w * np.abs(scale * p + shift - g)))


def l1_scale(p, g):
    """MoGe ``align_depth_scale(p, g, 1/g)``: argmin_s sum |s p - g| / g."""
    keep = p != 0
    return float(_weighted_median(g[keep] / p[keep], np.abs(p[keep]) / g[keep]))


def l1_affine(p, g):
    """MoGe ``align_depth_affine(p, g, 1/g)``: argmin_{s,b} sum |s p + b - g| / g. An
    optimum of this linear programme passes through a data point j; with b = g_j - s p_j,
    s is a weighted median of the slopes to j. Every j is tried: O(n² log n), for the
    small images of tests only."""
    w = 1 / g
    best = (math.inf, 1.0, 0.0)
    for j in range(p.size):
        dp, dg = p - p[j], g - g[j]
        keep = dp != 0
        if not keep.any():
            continue
        scale = _weighted_median(dg[keep] / dp[keep], w[keep] * np.abs(dp[keep]))
        shift = g[j] - scale * p[j]
        cost = _l1_cost(p, g, w, scale, shift)
        if cost < best[0]:
            best = (cost, float(scale), float(shift))
    return best[1], best[2]


def moge(samples, *, alignment="l1-affine", eps=1e-6):
    """microsoft/MoGe moge/test/metrics.py ``compute_metrics`` (depth entries).

    Valid: the ground-truth mask only. ``"l1-affine"`` (``depth_affine_invariant``),
    ``"l1-scale"`` (``depth_scale_invariant``) or ``"none"`` (``depth_metric``); no clamp.
    ``rel = mean(|p - g| / (g + 1e-6))`` (``rel_depth``, reported as ``abs_rel``) and
    ``delta1 = mean(max(g/p, p/g) < 1.25)``; mean over images (``key_average``)."""
    rows = []
    for pred, gt, mask in samples:
        p, g = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
        valid = _as_mask(mask, g.shape) & np.isfinite(g) & (g > 0)
        if not valid.any():
            continue
        pv, gv = p[valid], g[valid]
        if alignment == "l1-affine":
            scale, shift = l1_affine(pv, gv)
        elif alignment == "l1-scale":
            scale, shift = l1_scale(pv, gv), 0.0
        elif alignment == "none":
            scale, shift = 1.0, 0.0
        else:
            raise ValueError(f"MoGe oracle has no alignment {alignment!r}")
        aligned = pv * scale + shift
        rows.append(
            {
                "abs_rel": float(np.mean(np.abs(aligned - gv) / (gv + eps))),
                "delta1": float(np.mean(np.maximum(gv / aligned, aligned / gv) < 1.25)),
            }
        )
    return _average(rows)


# --------------------------------------------------------------------------- normals

# Sign of each axis in a frame, relative to x right, y up, z toward the camera.
_FRAME_SIGNS = {"opengl": (1, 1, 1), "opencv": (1, -1, -1), "dsine": (1, -1, 1)}


def dsine(samples, *, pred_frame="dsine", reduction="pixel"):
    """baegwangbin/DSINE utils/utils.py ``compute_normal_error`` (angle = acos of the
    clamped cosine similarity, in degrees) and ``compute_normal_metrics`` (mean, median,
    rmse, shares under 5, 7.5, 11.25, 22.5, 30 degrees, over every valid pixel of the
    dataset pooled). Ground truth in DSINE's frame (x right, y down, z toward the camera);
    a prediction in ``pred_frame`` is flipped into it. ``mask``: DSINE's loaders keep the
    pixels whose raw PNG is not black. ``reduction="image"`` averages per-image values."""
    signs = np.array(_FRAME_SIGNS[pred_frame]) * np.array(_FRAME_SIGNS["dsine"])
    per_image = []
    for pred, gt, mask in samples:
        p = np.asarray(pred, np.float64) * signs
        g = np.asarray(gt, np.float64)
        keep = _as_mask(mask, g.shape[:-1])
        norms = np.maximum(np.linalg.norm(p, axis=-1), 1e-8) * np.maximum(
            np.linalg.norm(g, axis=-1), 1e-8
        )
        cosine = np.clip((p * g).sum(-1) / norms, -1.0, 1.0)
        per_image.append(np.degrees(np.arccos(cosine))[keep])
    if reduction == "pixel":
        return _normal_stats(np.concatenate(per_image))
    return _average([_normal_stats(errors) for errors in per_image if errors.size])


def _normal_stats(errors):
    out = {
        "mean": float(np.mean(errors)),
        "median": float(np.median(errors)),
        "rmse": float(np.sqrt(np.mean(errors**2))),
    }
    for t in (5, 7.5, 11.25, 22.5, 30):
        out[f"within_{t:g}"] = float(np.mean(errors < t))
    return out


# --------------------------------------------------------------------------- segmentation


def mmseg(samples, *, num_classes, ignore_index=255, reduce_zero_label=False):
    """open-mmlab/mmsegmentation mmseg/evaluation/metrics/iou_metric.py
    (``intersect_and_union`` per image, areas summed over the dataset, then
    ``total_area_to_metrics``). ``reduce_zero_label`` (ADE20K, the loader's
    LoadAnnotations): ground truth 0 -> 255, k -> k - 1. Pixels whose label is
    ``ignore_index`` are dropped; areas are histograms over [0, num_classes), so labels
    or predictions outside it count nowhere. IoU = I / U, Acc = I / label area, aAcc
    (``pixel_accuracy``) = sum I / sum label area, mIoU / mAcc = nanmean."""
    total = np.zeros((4, num_classes))  # intersect, union, pred area, label area
    bins = np.arange(num_classes + 1) - 0.5
    for pred, gt, mask in samples:
        label = np.asarray(gt).astype(np.int64)
        if reduce_zero_label:
            label = np.where(label == 0, 255, label - 1)
            label = np.where(label == 254, 255, label)
        keep = (label != ignore_index) & _as_mask(mask, label.shape)
        p, lab = np.asarray(pred).astype(np.int64)[keep], label[keep]
        intersect = np.histogram(p[p == lab], bins)[0]
        area_pred = np.histogram(p, bins)[0]
        area_label = np.histogram(lab, bins)[0]
        total += [intersect, area_pred + area_label - intersect, area_pred, area_label]
    intersect, union, _, area_label = total
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = intersect / union
        acc = intersect / area_label
    return {
        "miou": float(np.nanmean(iou)),
        "mean_accuracy": float(np.nanmean(acc)),
        "pixel_accuracy": float(intersect.sum() / area_label.sum()),
        "iou": iou.tolist(),
        "accuracy": acc.tolist(),
    }


# cityscapesScripts helpers/labels.py: id -> (trainId, category, ignoreInEval), ids 0..33.
_CITYSCAPES_LABELS = {
    0: (255, "void", True), 1: (255, "void", True), 2: (255, "void", True),
    3: (255, "void", True), 4: (255, "void", True), 5: (255, "void", True),
    6: (255, "void", True), 7: (0, "flat", False), 8: (1, "flat", False),
    9: (255, "flat", True), 10: (255, "flat", True), 11: (2, "construction", False),
    12: (3, "construction", False), 13: (4, "construction", False),
    14: (255, "construction", True), 15: (255, "construction", True),
    16: (255, "construction", True), 17: (5, "object", False), 18: (255, "object", True),
    19: (6, "object", False), 20: (7, "object", False), 21: (8, "nature", False),
    22: (9, "nature", False), 23: (10, "sky", False), 24: (11, "human", False),
    25: (12, "human", False), 26: (13, "vehicle", False), 27: (14, "vehicle", False),
    28: (15, "vehicle", False), 29: (255, "vehicle", True), 30: (255, "vehicle", True),
    31: (16, "vehicle", False), 32: (17, "vehicle", False), 33: (18, "vehicle", False),
}  # fmt: skip


def cityscapes(samples):
    """mcordts/cityscapesScripts evaluation/evalPixelLevelSemanticLabeling.py.

    ``gt`` holds labelIds (``*_gtFine_labelIds.png``), ``pred`` train ids 0..18 (255 or any
    other value: no class). The prediction is mapped back to labelIds (no class -> id 0,
    ``unlabeled``, which is ignoreInEval), one confusion matrix over labelIds is summed over
    the dataset, and for each evaluated label: TP = C[l, l], FN = row sum - TP (predictions
    of ignored labels included), FP = column l over the rows of non-ignored labels other
    than l. Categories likewise over their evaluated labels (``getIouScoreForCategory``).
    Averages skip NaN (``getScoreAverage``). ``mask`` False pixels are left out."""
    train_to_id = {train: lid for lid, (train, _, ignored) in _CITYSCAPES_LABELS.items()
                   if not ignored}  # fmt: skip
    size = 256
    confusion = np.zeros((size, size), dtype=np.int64)
    for pred, gt, mask in samples:
        gt = np.asarray(gt).astype(np.int64)
        pred_ids = np.vectorize(lambda t: train_to_id.get(int(t), 0))(np.asarray(pred))
        keep = _as_mask(mask, gt.shape)
        np.add.at(confusion, (gt[keep], pred_ids[keep]), 1)
    evaluated = [lid for lid, (_, _, ignored) in _CITYSCAPES_LABELS.items() if not ignored]
    class_iou = []
    for lid in evaluated:
        tp = confusion[lid, lid]
        others = [x for x in evaluated if x != lid]
        fp = confusion[others, lid].sum()
        fn = confusion[lid, :].sum() - tp
        class_iou.append(tp / (tp + fp + fn) if tp + fp + fn else math.nan)
    category_iou = {}
    for category in ("flat", "construction", "object", "nature", "sky", "human", "vehicle"):
        members = [lid for lid in evaluated if _CITYSCAPES_LABELS[lid][1] == category]
        outside = [lid for lid in evaluated if _CITYSCAPES_LABELS[lid][1] != category]
        tp = confusion[np.ix_(members, members)].sum()
        fn = confusion[members, :].sum() - tp
        fp = confusion[np.ix_(outside, members)].sum()
        category_iou[category] = tp / (tp + fp + fn) if tp + fp + fn else math.nan
    return {
        "miou": _nan_average(class_iou),
        "iou": [float(x) for x in class_iou],
        "category_iou": {k: float(v) for k, v in category_iou.items()},
        "miou_category": _nan_average(list(category_iou.values())),
    }


def _nan_average(values):
    kept = [v for v in values if not math.isnan(v)]
    return float(sum(kept) / len(kept)) if kept else math.nan
