"""Semantic-segmentation metrics from one dataset-level confusion matrix.

``update`` adds every labelled pixel of a batch to a ``C x (C + 1)`` count matrix on the
device: row = true class, column = predicted class, and an extra last column for pixels
whose prediction is not a class (e.g. ``ignore_index`` from ``decode_segmentation(...,
max_distance=r)``): such a pixel is a miss for its true class, never dropped. Pixels whose
*target* is ``ignore_index`` are not counted.

With ``TP_c`` the diagonal, ``FN_c`` the rest of row ``c`` (extra column included) and
``FP_c`` the rest of column ``c``:

=================== =============================================================
iou (per class)     ``TP_c / (TP_c + FP_c + FN_c)``; NaN for a class that is in
                    neither the targets nor the predictions
miou                mean of the per-class IoU over the classes that are not NaN
pixel_accuracy      ``sum_c TP_c / labelled pixels``
mean_accuracy       mean over the classes present in the targets of ``TP_c / row_c``
=================== =============================================================

IoU is accumulated over the whole dataset (the Cityscapes/ADE20K protocol), not averaged
per image. ``pixel_accuracy`` and ``mean_accuracy`` are mmsegmentation's ``aAcc`` and
``mAcc`` (mmseg/evaluation/metrics/iou_metric.py); ``accuracy`` is the per-class list.

Category IoU (cityscapesScripts' evalPixelLevelSemanticLabeling.py
``getIouScoreForCategory``): ``categories`` maps a name to the class indices it groups;
for category ``K``, ``TP`` sums the matrix over truth in ``K`` and prediction in ``K``,
``FN`` the rest of those rows (the no-class column included), ``FP`` the columns of ``K``
over truth outside ``K``. ``category_iou`` is a dict name -> IoU, ``miou_category`` its
mean over the non-NaN entries. ``CITYSCAPES_CATEGORIES`` holds the seven categories of
cityscapesScripts' labels.py over the 19 train ids.

Label preparation happens before the metric, as the reference loaders do it:
``cityscapes_label_to_train_id`` is the 256-entry labelIds -> trainIds lookup (255 for
ids without a train id) that ``cityscapes_to_train_ids`` applies, and
``reduce_zero_label`` is mmsegmentation's ADE20K rule (0 -> 255, k -> k - 1, 255 stays).

Counting is ``bincount`` over ``target * (C + 1) + pred``, written as ``scatter_add_`` into a
fixed-length buffer: ``torch.bincount`` on CUDA reads the input's maximum back to the host
to size its output, which is a sync. Target labels that are neither in ``[0, C)`` nor
``ignore_index`` cannot be checked without a sync either, so ``update`` counts them and
``compute()`` raises ``ValueError`` if there were any.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._common import as_tensor, check_integer, check_mask, check_pair, to_python

# cityscapesScripts helpers/labels.py: (labelId, trainId) of the 19 evaluated classes.
_CITYSCAPES_TRAIN_IDS = (
    (7, 0),  # road
    (8, 1),  # sidewalk
    (11, 2),  # building
    (12, 3),  # wall
    (13, 4),  # fence
    (17, 5),  # pole
    (19, 6),  # traffic light
    (20, 7),  # traffic sign
    (21, 8),  # vegetation
    (22, 9),  # terrain
    (23, 10),  # sky
    (24, 11),  # person
    (25, 12),  # rider
    (26, 13),  # car
    (27, 14),  # truck
    (28, 15),  # bus
    (31, 16),  # train
    (32, 17),  # motorcycle
    (33, 18),  # bicycle
)

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip

# labels.py's categories of the evaluated classes, as train ids ("void" has none).
CITYSCAPES_CATEGORIES = {
    "flat": (0, 1),
    "construction": (2, 3, 4),
    "object": (5, 6, 7),
    "nature": (8, 9),
    "sky": (10,),
    "human": (11, 12),
    "vehicle": (13, 14, 15, 16, 17, 18),
}


def _label_table() -> np.ndarray:
    table = np.full(256, 255, dtype=np.uint8)
    for label_id, train_id in _CITYSCAPES_TRAIN_IDS:
        table[label_id] = train_id
    table.setflags(write=False)
    return table


cityscapes_label_to_train_id = _label_table()


def cityscapes_to_train_ids(label_ids):
    """Cityscapes ``*_labelIds.png`` values to train ids 0..18, 255 for every id that has
    none (and for values outside 0..255). NumPy in, NumPy uint8 out; torch in, torch uint8
    out on the same device."""
    is_numpy = isinstance(label_ids, np.ndarray)
    labels = as_tensor(label_ids, "label_ids")
    check_integer(labels, "label_ids")
    table = torch.from_numpy(cityscapes_label_to_train_id.copy()).to(labels.device)
    inside = (labels >= 0) & (labels <= 255)
    mapped = table[torch.where(inside, labels, 255).long()]
    return mapped.numpy() if is_numpy else mapped


def reduce_zero_label(labels):
    """mmsegmentation's ``reduce_zero_label`` (ADE20K): 0 (``other``) becomes 255 (ignored)
    and every other label ``k`` becomes ``k - 1``; 255 stays 255. Keeps the array type,
    dtype and device."""
    is_numpy = isinstance(labels, np.ndarray)
    t = as_tensor(labels, "labels")
    check_integer(t, "labels")
    ignore = torch.full_like(t, 255)
    out = torch.where((t == 0) | (t == 255), ignore, t - 1)
    return out.numpy() if is_numpy else out


def category_iou(confusion, unassigned, categories: dict) -> dict[str, float]:
    """IoU per category from a ``(C, C)`` confusion matrix (row = truth) and the per-class
    count of predictions that are no class (see the module docstring)."""
    matrix = torch.as_tensor(confusion).double()
    missed = torch.as_tensor(unassigned).double()
    c = matrix.shape[0]
    scores = {}
    for name, members in categories.items():
        inside = torch.zeros(c, dtype=torch.bool)
        index = list(members)
        if not index or min(index) < 0 or max(index) >= c:
            raise ValueError(f"category {name!r} holds class indices outside [0, {c}): {members}")
        inside[index] = True
        tp = matrix[inside][:, inside].sum()
        fn = matrix[inside].sum() + missed[inside].sum() - tp
        fp = matrix[~inside][:, inside].sum()
        union = tp + fn + fp
        scores[name] = float(tp / union) if union > 0 else math.nan
    return scores


class SegmentationMetrics:
    """Stateful confusion-matrix accumulator for ``num_classes`` classes.

    ``update(pred, target, mask=None)`` takes integer label maps of equal shape (any shape,
    typically ``(N, H, W)``), torch tensors or NumPy arrays on any device; ``mask`` (bool,
    broadcastable) drops pixels like ``ignore_index`` does. It launches device work only.
    ``compute()`` returns ``miou``, ``pixel_accuracy``, ``mean_accuracy`` (floats), ``iou``
    and ``accuracy`` (lists of floats, one per class; NaN where undefined), with
    ``categories`` also ``category_iou`` (dict) and ``miou_category``, and
    ``confusion_matrix`` (a ``(C, C)`` int64 CPU tensor, row = true class; predictions
    outside ``[0, C)`` are in ``unassigned``, a list of per-class counts).
    """

    def __init__(
        self, num_classes: int, *, ignore_index: int | None = 255, categories: dict | None = None
    ):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        if ignore_index is not None:
            if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
                raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}")
            if 0 <= ignore_index < num_classes:
                raise ValueError(
                    f"ignore_index={ignore_index} is a valid class index for "
                    f"num_classes={num_classes}"
                )
        if categories is not None:
            category_iou(torch.zeros(num_classes, num_classes), [0] * num_classes, categories)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.categories = categories
        self.reset()

    def reset(self) -> None:
        self._counts = None  # (C * (C + 1) + 1,) int64; the last bin collects unlabelled pixels
        self._bad_targets = None  # int64 scalar: target labels outside [0, C) and not ignore_index
        # Per update: (per-image mIoU (N,) float64, pixel accuracy (N,), labelled pixels (N,))
        self._per_image: list[tuple[torch.Tensor, ...]] = []

    def update(self, pred, target, mask=None) -> None:
        pred, target, mask = _check_pair(pred, target, mask)
        if target.numel() == 0:
            return
        c = self.num_classes
        t = target.reshape(-1).long()
        p = pred.reshape(-1).long()
        in_range = (t >= 0) & (t < c)
        labelled = in_range
        if mask is not None:
            labelled = labelled & mask.reshape(-1)
        ignored = (
            t == self.ignore_index if self.ignore_index is not None else torch.zeros_like(in_range)
        )
        column = torch.where((p >= 0) & (p < c), p, c)
        dump = c * (c + 1)
        index = torch.where(labelled, t * (c + 1) + column, dump)
        if self._counts is None:
            self._counts = torch.zeros(dump + 1, dtype=torch.int64, device=target.device)
            self._bad_targets = torch.zeros((), dtype=torch.int64, device=target.device)
        self._counts.scatter_add_(0, index, torch.ones_like(index))
        self._bad_targets += (~in_range & ~ignored).sum()
        self._per_image.append(_image_scores(t, column, labelled, target.shape, c))

    def per_image(self) -> list[dict]:
        """One dict per image passed to ``update`` (in order; an image is one ``(H, W)``
        slice, leading dims are batch dims): ``miou`` over the classes in that image's
        truth or prediction, ``pixel_accuracy`` and ``labelled_pixels`` (NaN scores for an
        image without labelled pixels)."""
        if not self._per_image:
            return []
        miou, accuracy, labelled = (
            torch.cat(column).cpu().tolist() for column in zip(*self._per_image)
        )
        return [
            {"miou": m, "pixel_accuracy": a, "labelled_pixels": n}
            for m, a, n in zip(miou, accuracy, labelled)
        ]

    def compute(self) -> dict:
        c = self.num_classes
        if self._counts is None:
            counts = torch.zeros(c, c + 1, dtype=torch.int64)
        else:
            bad = int(to_python(self._bad_targets))
            if bad:
                raise ValueError(
                    f"target held {bad} labels outside [0, {c}) that are not "
                    f"ignore_index={self.ignore_index}; "
                    "check num_classes and ignore_index"
                )
            counts = self._counts[: c * (c + 1)].view(c, c + 1).cpu()
        scores = _scores(counts)
        if self.categories is not None:
            per_category = category_iou(
                scores["confusion_matrix"], scores["unassigned"], self.categories
            )
            scores["category_iou"] = per_category
            values = torch.tensor(list(per_category.values()), dtype=torch.float64)
            scores["miou_category"] = _nanmean(values)
        return scores


def segmentation_metrics(
    pred,
    target,
    num_classes: int,
    *,
    ignore_index: int | None = 255,
    mask=None,
    categories: dict | None = None,
) -> dict:
    """One-shot :class:`SegmentationMetrics`."""
    metric = SegmentationMetrics(num_classes, ignore_index=ignore_index, categories=categories)
    metric.update(pred, target, mask)
    return metric.compute()


def _image_scores(t, column, labelled, shape, c):
    """Per-image mIoU, pixel accuracy and labelled-pixel count, on the device (no sync)."""
    hw = shape[-2] * shape[-1] if len(shape) >= 2 else max(math.prod(shape), 1)
    images = t.numel() // hw
    image = torch.arange(images, device=t.device).repeat_interleave(hw)
    bins = images * (c + 1)
    ones = labelled.to(torch.int64)

    def histogram(classes, weight):
        counts = torch.zeros(bins, dtype=torch.int64, device=t.device)
        index = image * (c + 1) + torch.where(labelled, classes, c)
        return counts.scatter_add_(0, index, weight).view(images, c + 1)[:, :c].double()

    label_area = histogram(t.clamp(0, c), ones)
    pred_area = histogram(column, ones)
    hits = histogram(t.clamp(0, c), ones * (column == t))
    union = label_area + pred_area - hits
    present = union > 0
    iou = torch.where(present, hits / union.clamp(min=1), 0.0)
    classes = present.sum(1)
    miou = torch.where(classes > 0, iou.sum(1) / classes.clamp(min=1), math.nan)
    count = label_area.sum(1)
    accuracy = torch.where(count > 0, hits.sum(1) / count.clamp(min=1), math.nan)
    return miou, accuracy, count.long()


def _scores(counts: torch.Tensor) -> dict:
    """Metrics from the ``(C, C + 1)`` count matrix (row = truth, last column = no class)."""
    c = counts.shape[0]
    matrix = counts[:, :c]
    counts = counts.double()
    tp = counts.diagonal()
    rows = counts.sum(1)
    union = rows + counts[:, :c].sum(0) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), math.nan)
    recall = torch.where(rows > 0, tp / rows.clamp(min=1), math.nan)
    labelled = rows.sum()
    return {
        "miou": _nanmean(iou),
        "pixel_accuracy": float(tp.sum() / labelled) if labelled > 0 else math.nan,
        "mean_accuracy": _nanmean(recall),
        "iou": iou.tolist(),
        "accuracy": recall.tolist(),
        "confusion_matrix": matrix.clone(),
        "unassigned": counts[:, c].long().tolist(),
        "labelled_pixels": int(labelled),
    }


def _nanmean(values: torch.Tensor) -> float:
    present = values[~torch.isnan(values)]
    return float(present.mean()) if present.numel() else math.nan


def _check_pair(pred, target, mask):
    pred, target = check_pair(pred, target, check_integer)
    return pred, target, check_mask(mask, target, target.shape)
