"""Segmentation helpers worked by hand: Cityscapes labelIds -> trainIds, ADE20K's
reduce_zero_label, Cityscapes category IoU, per-class accuracy (mmseg's aAcc / mAcc)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vbkernels.metrics import (
    CITYSCAPES_CATEGORIES,
    CITYSCAPES_CLASSES,
    SegmentationMetrics,
    category_iou,
    cityscapes_label_to_train_id,
    cityscapes_to_train_ids,
    reduce_zero_label,
    segmentation_metrics,
)


def test_cityscapes_lookup_table():
    table = cityscapes_label_to_train_id
    assert table.shape == (256,) and table.dtype == np.uint8
    assert sorted(table[table != 255].tolist()) == list(range(19))
    assert (table[7], table[8], table[26], table[33]) == (0, 1, 13, 18)
    for no_train_id in (0, 1, 6, 9, 10, 14, 15, 16, 18, 29, 30, 34, 255):
        assert table[no_train_id] == 255, no_train_id
    assert len(CITYSCAPES_CLASSES) == 19 and CITYSCAPES_CLASSES[13] == "car"
    with pytest.raises(ValueError):
        table[0] = 1  # read-only, so nobody edits the shared table by accident


def test_a_label_id_without_train_id_is_ignored():
    label_ids = np.array([[7, 6, 26]], dtype=np.uint8)  # road, ground (no train id), car
    train = cityscapes_to_train_ids(label_ids)
    assert train.dtype == np.uint8 and train.tolist() == [[0, 255, 13]]
    got = segmentation_metrics(np.array([[0, 5, 13]]), train.astype(np.int64), 19)
    assert got["miou"] == 1.0 and got["labelled_pixels"] == 2
    as_torch = cityscapes_to_train_ids(torch.tensor([[-1, 33, 300]]))
    assert as_torch.tolist() == [[255, 18, 255]]


def test_reduce_zero_label_ade20k():
    raw = np.array([0, 1, 2, 150, 255], dtype=np.uint8)
    reduced = reduce_zero_label(raw)
    assert reduced.dtype == np.uint8 and reduced.tolist() == [255, 0, 1, 149, 255]
    assert reduce_zero_label(torch.tensor(raw, dtype=torch.int64)).tolist() == reduced.tolist()
    # Label 0 ("other") is ignored; label 1 is class 0.
    pred = np.array([7, 0, 1, 149, 3])
    got = segmentation_metrics(pred, reduced.astype(np.int64), 150)
    assert got["labelled_pixels"] == 3 and got["miou"] == 1.0


def test_category_iou_by_hand():
    # road->sidewalk is right at category level (flat), building->wall too (construction),
    # car->person is wrong (vehicle FN, human FP), sidewalk->255 is a flat FN.
    target = torch.tensor([0, 0, 2, 13, 1])
    pred = torch.tensor([1, 0, 3, 11, 255])
    got = segmentation_metrics(pred, target, 19, categories=CITYSCAPES_CATEGORIES)
    cat = got["category_iou"]
    assert cat["flat"] == pytest.approx(2 / 3)
    assert cat["construction"] == 1.0
    assert cat["vehicle"] == 0.0 and cat["human"] == 0.0
    assert math.isnan(cat["sky"]) and math.isnan(cat["object"]) and math.isnan(cat["nature"])
    assert got["miou_category"] == pytest.approx((2 / 3 + 1 + 0 + 0) / 4)
    assert "category_iou" not in segmentation_metrics(pred, target, 19)


def test_category_iou_function_and_bad_categories():
    matrix = torch.tensor([[3, 1], [2, 4]])
    got = category_iou(matrix, [1, 0], {"a": (0,), "ab": (0, 1)})
    assert got["a"] == pytest.approx(3 / (3 + 1 + 1 + 2))
    assert got["ab"] == pytest.approx(10 / 11)
    with pytest.raises(ValueError, match="category 'x'"):
        SegmentationMetrics(3, categories={"x": (1, 5)})


def test_per_class_accuracy_and_mmseg_names():
    target = torch.tensor([0, 0, 0, 1, 1, 2])
    pred = torch.tensor([0, 0, 1, 1, 2, 2])
    got = segmentation_metrics(pred, target, 4)
    assert got["accuracy"][:3] == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert math.isnan(got["accuracy"][3])
    assert got["mean_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)  # mmseg mAcc
    assert got["pixel_accuracy"] == pytest.approx(4 / 6)  # mmseg aAcc


def test_per_image_scores_by_hand():
    target = torch.tensor([[[0, 0], [1, 255]], [[2, 2], [2, 2]], [[255, 255], [255, 255]]])
    pred = torch.tensor([[[0, 1], [1, 0]], [[2, 2], [0, 255]], [[0, 0], [0, 0]]])
    metric = SegmentationMetrics(3)
    metric.update(pred[:2], target[:2])
    metric.update(pred[2:], target[2:])
    rows = metric.per_image()
    # Image 0: class 0 IoU 1/2 (TP 1, FN 1), class 1 IoU 1/2 (TP 1, FP 1); accuracy 2/3.
    assert rows[0]["miou"] == pytest.approx(0.5) and rows[0]["pixel_accuracy"] == pytest.approx(
        2 / 3
    )
    # Image 1: class 2 IoU 2/4, class 0 (predicted, absent) IoU 0: mIoU 1/4; accuracy 1/2.
    assert rows[1]["miou"] == pytest.approx(0.25) and rows[1]["pixel_accuracy"] == 0.5
    assert rows[2]["labelled_pixels"] == 0 and math.isnan(rows[2]["miou"])
    assert [r["labelled_pixels"] for r in rows] == [3, 4, 0]
