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
per image.

Counting is ``bincount`` over ``target * (C + 1) + pred``, written as ``scatter_add_`` into a
fixed-length buffer: ``torch.bincount`` on CUDA reads the input's maximum back to the host
to size its output, which is a sync. Target labels that are neither in ``[0, C)`` nor
``ignore_index`` cannot be checked without a sync either, so ``update`` counts them and
``compute()`` raises ``ValueError`` if there were any.
"""

from __future__ import annotations

import math

import torch

from ._common import check_integer, check_mask, check_pair, to_python


class SegmentationMetrics:
    """Stateful confusion-matrix accumulator for ``num_classes`` classes.

    ``update(pred, target, mask=None)`` takes integer label maps of equal shape (any shape,
    typically ``(N, H, W)``), torch tensors or NumPy arrays on any device; ``mask`` (bool,
    broadcastable) drops pixels like ``ignore_index`` does. It launches device work only.
    ``compute()`` returns ``miou``, ``pixel_accuracy``, ``mean_accuracy`` (floats), ``iou``
    (list of floats, one per class) and ``confusion_matrix`` (a ``(C, C)`` int64 CPU tensor,
    row = true class; predictions outside ``[0, C)`` are in ``unassigned``, a list of
    per-class counts).
    """

    def __init__(self, num_classes: int, *, ignore_index: int | None = 255):
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
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self._counts = None  # (C * (C + 1) + 1,) int64; the last bin collects unlabelled pixels
        self._bad_targets = None  # int64 scalar: target labels outside [0, C) and not ignore_index

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
        return _scores(counts)


def segmentation_metrics(
    pred, target, num_classes: int, *, ignore_index: int | None = 255, mask=None
) -> dict:
    """One-shot :class:`SegmentationMetrics`."""
    metric = SegmentationMetrics(num_classes, ignore_index=ignore_index)
    metric.update(pred, target, mask)
    return metric.compute()


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
