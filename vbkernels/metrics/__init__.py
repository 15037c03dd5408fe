"""Evaluation metrics for decoded depth, normals and segmentation.

Each family has a stateful accumulator (``update`` / ``compute`` / ``reset``) and a one-shot
function. ``update`` only launches work on the tensors' device and never reads a value back
to the host, so it can sit inside a GPU evaluation loop; ``compute()`` does the one read-back
and returns Python numbers. The definitions are in each module's docstring; ``units`` states
the one unit rule of evaluation output and formats a table row as each reference prints it.
"""

from .depth import DepthMetrics, depth_metrics
from .normals import FRAMES, NormalMetrics, convert_normals, normal_metrics
from .segmentation import (
    CITYSCAPES_CATEGORIES,
    CITYSCAPES_CLASSES,
    SegmentationMetrics,
    category_iou,
    cityscapes_label_to_train_id,
    cityscapes_to_train_ids,
    reduce_zero_label,
    segmentation_metrics,
)
from .units import (
    METRIC_UNITS,
    OUTPUT_UNIT,
    TABLE_FORMATS,
    format_row,
    metric_unit,
    to_output_units,
)

__all__ = [
    "DepthMetrics",
    "depth_metrics",
    "NormalMetrics",
    "normal_metrics",
    "convert_normals",
    "FRAMES",
    "SegmentationMetrics",
    "segmentation_metrics",
    "category_iou",
    "CITYSCAPES_CATEGORIES",
    "CITYSCAPES_CLASSES",
    "cityscapes_label_to_train_id",
    "cityscapes_to_train_ids",
    "reduce_zero_label",
    "OUTPUT_UNIT",
    "METRIC_UNITS",
    "TABLE_FORMATS",
    "format_row",
    "metric_unit",
    "to_output_units",
]
