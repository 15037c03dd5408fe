"""One unit rule for evaluation output, and each reference's table format.

The rule (``OUTPUT_UNIT = "fraction"``): in evaluation output (``metrics.json``, per-image
CSV) every ratio is a fraction in [0, 1] (delta_i, abs_rel, IoU, accuracies, the share of
normals within T degrees), angles are in degrees, rmse in metres, irmse in 1/m, and the
log metrics are in natural-log units (``silog`` keeps its factor 100, being defined so).
``NormalMetrics`` reports ``within_T`` in percent, as DSINE does; ``to_output_units``
turns any metrics dict into the rule's units and ``METRIC_UNITS`` names each unit.

Tables are printed as each reference prints its own, by ``format_row(metrics, protocol)``
from the output-unit dict: which columns, percent or fraction, and how many decimals.

============= ======================================================================
marigold      AbsRel and delta1 in percent, 1 decimal (Marigold paper, Table 1; eval.py
              itself writes raw fractions)
zoedepth      delta1..3, AbsRel, RMSE, log10 as fractions, 3 decimals (ZoeDepth
              evaluate.py rounds every metric to 3 decimals)
depth-anything-v2 delta1..3, AbsRel, RMSE, log10 (metric depth) as fractions, 3 decimals
              (metric_depth/train.py logs ``{:8.3f}``)
moge          Rel and delta1 in percent, 2 decimals (MoGe paper tables print percent;
              the decimals are our reading; moge's eval script writes raw fractions)
dsine         mean, median, rmse in degrees and the shares within 5..30 degrees in
              percent, 1 decimal (DSINE paper tables; utils/utils.py reports percent)
mmseg         aAcc, mIoU, mAcc in percent, 2 decimals (iou_metric.py rounds
              ``np.round(x * 100, 2)``)
cityscapes    the class and the category IoU averages as fractions, 3 decimals
              (evalPixelLevelSemanticLabeling.py prints ``{:5.3f}``)
kitti         SILog, sqErrorRel and absErrorRel in percent, iRMSE in 1/km, 2 decimals
              (the KITTI depth prediction benchmark's table)
============= ======================================================================
"""

from __future__ import annotations

import math

OUTPUT_UNIT = "fraction"

_NORMAL_PERCENT_PREFIX = "within_"

METRIC_UNITS = {
    "abs_rel": "fraction",
    "sq_rel": "m",
    "rmse_log": "ln",
    "log10": "log10",
    "silog": "100 ln",
    "silog_eigen": "ln^2",
    "silog_da2": "ln",
    "irmse": "1/m",
    "mean": "degree",
    "median": "degree",
    "miou": "fraction",
    "miou_category": "fraction",
    "pixel_accuracy": "fraction",
    "mean_accuracy": "fraction",
}


def metric_unit(name: str) -> str:
    """The unit of metric ``name`` in evaluation output (see the module docstring)."""
    if name.startswith("delta") or name.startswith(_NORMAL_PERCENT_PREFIX):
        return "fraction"
    if name == "rmse":
        return "m or degree"  # metres for depth, degrees for normals
    if name not in METRIC_UNITS:
        raise KeyError(f"no unit is defined for metric {name!r}")
    return METRIC_UNITS[name]


def to_output_units(metrics: dict) -> dict:
    """A copy of ``metrics`` in the output units: ``within_T`` (percent, from
    ``NormalMetrics``) becomes a fraction; everything else already is in them."""
    return {
        name: value / 100.0 if name.startswith(_NORMAL_PERCENT_PREFIX) else value
        for name, value in metrics.items()
    }


# protocol -> columns of (metric name, header, factor, decimals)
TABLE_FORMATS = {
    "marigold": (("abs_rel", "AbsRel", 100, 1), ("delta1", "δ1", 100, 1)),
    "zoedepth": (
        ("delta1", "δ1", 1, 3),
        ("delta2", "δ2", 1, 3),
        ("delta3", "δ3", 1, 3),
        ("abs_rel", "REL", 1, 3),
        ("rmse", "RMSE", 1, 3),
        ("log10", "log10", 1, 3),
    ),
    "depth-anything-v2": (
        ("delta1", "δ1", 1, 3),
        ("delta2", "δ2", 1, 3),
        ("delta3", "δ3", 1, 3),
        ("abs_rel", "AbsRel", 1, 3),
        ("rmse", "RMSE", 1, 3),
        ("log10", "log10", 1, 3),
    ),
    "moge": (("abs_rel", "Rel", 100, 2), ("delta1", "δ1", 100, 2)),
    "dsine": (
        ("mean", "mean", 1, 1),
        ("median", "median", 1, 1),
        ("rmse", "rmse", 1, 1),
        ("within_5", "5.0°", 100, 1),
        ("within_7.5", "7.5°", 100, 1),
        ("within_11.25", "11.25°", 100, 1),
        ("within_22.5", "22.5°", 100, 1),
        ("within_30", "30°", 100, 1),
    ),
    "mmseg": (
        ("pixel_accuracy", "aAcc", 100, 2),
        ("miou", "mIoU", 100, 2),
        ("mean_accuracy", "mAcc", 100, 2),
    ),
    "cityscapes": (("miou", "IoU class", 1, 3), ("miou_category", "IoU category", 1, 3)),
    "kitti": (
        ("silog", "SILog", 1, 2),
        ("sq_rel", "sqErrorRel", 100, 2),
        ("abs_rel", "absErrorRel", 100, 2),
        ("irmse", "iRMSE", 1000, 2),
    ),
}


def format_row(metrics: dict, protocol: str, *, label: str | None = None) -> str:
    """A Markdown table (header, rule, one row) of ``metrics`` (in output units) as
    ``protocol``'s reference prints it. ``label`` adds a first column (e.g. the dataset).
    A metric that is missing or NaN prints as ``-``."""
    if protocol not in TABLE_FORMATS:
        raise ValueError(f"protocol must be one of {tuple(TABLE_FORMATS)}, got {protocol!r}")
    columns = TABLE_FORMATS[protocol]
    headers = [header for _, header, _, _ in columns]
    cells = [_cell(metrics.get(name), factor, decimals) for name, _, factor, decimals in columns]
    if label is not None:
        headers.insert(0, "")
        cells.insert(0, label)
    rule = ["---"] * len(headers)
    return "\n".join("| " + " | ".join(row) + " |" for row in (headers, rule, cells))


def _cell(value, factor: float, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * factor:.{decimals}f}"
