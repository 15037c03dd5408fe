"""The one unit rule of evaluation output, and each reference's table row."""

from __future__ import annotations

import math

import pytest
import torch

from vbkernels.metrics import (
    TABLE_FORMATS,
    DepthMetrics,
    NormalMetrics,
    format_row,
    metric_unit,
    segmentation_metrics,
    to_output_units,
)


def test_every_metric_name_has_a_unit():
    names = list(DepthMetrics().names) + list(NormalMetrics().names)
    seg = segmentation_metrics(
        torch.zeros(2, dtype=torch.long),
        torch.zeros(2, dtype=torch.long),
        2,
        categories={"all": (0, 1)},
    )
    names += ["miou", "pixel_accuracy", "mean_accuracy", "miou_category"]
    assert set(names[-4:]) <= set(seg)
    for name in names:
        assert metric_unit(name), name
    assert metric_unit("within_11.25") == "fraction" and metric_unit("irmse") == "1/m"
    with pytest.raises(KeyError, match="bogus"):
        metric_unit("bogus")


def test_to_output_units_turns_normal_percentages_into_fractions():
    got = to_output_units({"mean": 12.0, "within_11.25": 55.0, "valid_pixels": 7})
    assert got == {"mean": 12.0, "within_11.25": 0.55, "valid_pixels": 7}


def test_rows_as_the_references_print_them():
    depth = {
        "abs_rel": 0.05549,
        "delta1": 0.96351,
        "delta2": 0.99,
        "delta3": 0.998,
        "rmse": 0.2204,
        "log10": 0.0241,
        "silog": 10.123,
        "sq_rel": 0.01234,
        "irmse": 0.012345,
    }
    assert format_row(depth, "marigold").splitlines()[-1] == "| 5.5 | 96.4 |"
    assert format_row(depth, "moge").splitlines()[-1] == "| 5.55 | 96.35 |"
    assert format_row(depth, "zoedepth").splitlines()[-1] == (
        "| 0.964 | 0.990 | 0.998 | 0.055 | 0.220 | 0.024 |"
    )
    # KITTI prints iRMSE in 1/km: the 1/m value times 1000.
    assert format_row(depth, "kitti").splitlines()[-1] == "| 10.12 | 1.23 | 5.55 | 12.35 |"
    seg = {"pixel_accuracy": 0.95123, "miou": 0.699, "mean_accuracy": math.nan}
    assert format_row(seg, "mmseg").splitlines()[-1] == "| 95.12 | 69.90 | - |"
    assert format_row(seg, "cityscapes", label="val").splitlines() == [
        "|  | IoU class | IoU category |",
        "| --- | --- | --- |",
        "| val | 0.699 | - |",
    ]
    normals = to_output_units(
        {
            "mean": 16.42,
            "median": 8.44,
            "rmse": 25.3,
            "within_5": 20.0,
            "within_7.5": 30.0,
            "within_11.25": 59.61,
            "within_22.5": 77.7,
            "within_30": 83.9,
        }
    )
    assert format_row(normals, "dsine").splitlines()[-1] == (
        "| 16.4 | 8.4 | 25.3 | 20.0 | 30.0 | 59.6 | 77.7 | 83.9 |"
    )
    assert set(TABLE_FORMATS) >= {
        "marigold",
        "zoedepth",
        "depth-anything-v2",
        "moge",
        "dsine",
        "mmseg",
        "cityscapes",
    }
    with pytest.raises(ValueError, match="protocol"):
        format_row(depth, "nyu")
