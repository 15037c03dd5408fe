"""Evaluation protocols as data: every choice the anchors make differently, in one table.

``resolve(task, dataset, protocol=None, **overrides) -> Settings`` starts from the
protocol's row (the task's default protocol when none is named), fills what depends on the
dataset (crop, valid range), then applies each override the user gave (``--align``,
``--crop`` ...). ``Settings`` holds every resolved choice and goes into ``metrics.json``.

Choices (depth unless stated)
-----------------------------
crop        ``none``; ``eigen`` (NYUv2 480x640: rows 45:471, cols 41:601); ``garg`` /
            ``eigen-kitti`` (KITTI, fractions of the KB-cropped size: Garg rows
            0.40810811 H..0.99189189 H, Eigen rows 0.3324324 H..0.91351351 H, both cols
            0.0359477 W..0.96405229 W); ``kb`` (KITTI benchmark crop to 352 x 1216, top
            H - 352, left (W - 1216) // 2); ``kb+garg``, ``kb+eigen``; ``dataset`` = the
            dataset preset's usual crop.
range       ``strict`` (``min < g < max``) or ``inclusive`` (``min <= g <= max``).
clamp       where the prediction is clipped to ``[min, max]``: ``after`` alignment,
            ``before`` it, or ``none``.
align       ``none`` (metric), ``median``, ``lstsq``, ``lstsq-affine`` (depth space),
            ``disparity-affine``, ``l1-scale``, ``l1-affine`` (MoGe).
reduction   ``image`` (per image, then the mean over images) or ``pixel`` (pooled).
resize      how decoded values reach the ground truth's size: ``bilinear``,
            ``bilinear-ac`` (align_corners=True, as ZoeDepth/Depth Anything), ``nearest``,
            ``bicubic``, ``logits`` (segmentation: when the sizes differ, the palette
            logits ``segmentation_logits`` are resized bilinearly and the argmax taken, as
            MMSegmentation resizes its logits; labels otherwise), ``none`` (sizes must
            match).
fit         how the generated frame maps onto the ground truth: ``none`` (default: sizes
            must match, anything else is an error naming the file), ``resize`` (the frame
            is the whole image, stretched), ``letterbox`` (padding bars are cut off
            first), ``center-crop`` (the generator saw a centre crop: only that region of
            the ground truth is scored).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from .datasets import get_preset

ALIGNMENTS = ("none", "median", "lstsq", "lstsq-affine", "disparity-affine", "l1-scale",
              "l1-affine")
CROPS = ("none", "dataset", "eigen", "garg", "eigen-kitti", "kb", "kb+garg", "kb+eigen")
RANGES = ("strict", "inclusive")
CLAMPS = ("after", "before", "none")
REDUCTIONS = ("image", "pixel")
RESIZES = ("bilinear", "bilinear-ac", "nearest", "bicubic", "logits", "none")
FITS = ("none", "resize", "letterbox", "center-crop")
FRAMES = ("opengl", "opencv", "dsine")


@dataclass(frozen=True)
class Settings:
    """Every resolved choice of one evaluation (see the module docstring)."""

    task: str
    dataset: str
    protocol: str
    source: str
    crop: str = "none"
    min_depth: float = 1e-3
    max_depth: float | None = None
    range: str = "strict"
    clamp: str = "after"
    align: str = "none"
    reduction: str = "image"
    min_valid_pixels: int = 1
    resize: str = "bilinear"
    fit: str = "none"
    pred_frame: str = "opengl"     # normals: the frame predictions are decoded in
    gt_frame: str = "opengl"       # normals: the ground truth's frame
    num_classes: int | None = None
    category_iou: bool = False     # seg: also Cityscapes' 7-category IoU

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Protocol:
    """One reference's choices; ``per_dataset`` holds those it makes per dataset (e.g. the
    KITTI crop), applied over ``choices``."""

    name: str
    task: str
    source: str
    choices: dict = field(default_factory=dict)
    per_dataset: dict = field(default_factory=dict)


_DA2_INDOOR = {"max_depth": 20.0}   # Depth Anything V2's metric models: indoor 20 m,
_DA2_OUTDOOR = {"max_depth": 80.0}  # outdoor 80 m (metric_depth/train.py --max-depth)

PROTOCOLS = {p.name: p for p in (
    Protocol("marigold", "depth", "prs-eth/Marigold eval.py, src/util/metric.py, "
             "src/util/alignment.py", dict(
                 align="lstsq-affine", clamp="after", range="strict", reduction="image",
                 resize="bilinear", crop="dataset"),
             {"kitti-eigen": {"crop": "kb+eigen", "min_depth": 1e-5}}),
    Protocol("zoedepth", "depth", "isl-org/ZoeDepth zoedepth/utils/misc.py "
             "(compute_metrics)", dict(
                 align="none", clamp="before", range="strict", reduction="image",
                 resize="bilinear-ac", crop="dataset"),
             {"kitti-eigen": {"crop": "kb+garg"}}),
    Protocol("depth-anything-v2", "depth", "DepthAnything/Depth-Anything-V2 "
             "metric_depth/util/metric.py, metric_depth/train.py", dict(
                 align="none", clamp="none", range="inclusive", reduction="image",
                 min_valid_pixels=10, resize="bilinear-ac", crop="none"),
             {"nyuv2": _DA2_INDOOR, "scannet": _DA2_INDOOR, "ibims": _DA2_INDOOR,
              "diode-indoors": _DA2_INDOOR, "kitti-eigen": _DA2_OUTDOOR,
              "diode-outdoor": _DA2_OUTDOOR}),
    Protocol("moge", "depth", "microsoft/MoGe moge/test/metrics.py", dict(
                 align="l1-affine", clamp="none", range="strict", min_depth=0.0,
                 max_depth=None, reduction="image", resize="nearest", crop="none")),
    Protocol("dsine", "normals", "baegwangbin/DSINE utils/utils.py "
             "(compute_normal_error, compute_normal_metrics)", dict(
                 reduction="pixel", resize="bilinear", gt_frame="dsine")),
    Protocol("mmseg", "seg", "open-mmlab/mmsegmentation mmseg/evaluation/metrics/"
             "iou_metric.py", dict(reduction="pixel", resize="logits")),
    Protocol("cityscapes", "seg", "mcordts/cityscapesScripts evaluation/"
             "evalPixelLevelSemanticLabeling.py", dict(
                 reduction="pixel", resize="none", category_iou=True)),
)}

DEFAULT_PROTOCOL = {"depth": "zoedepth", "normals": "dsine", "seg": "mmseg"}
_DATASET_PROTOCOL = {"cityscapes": "cityscapes"}


def default_protocol(task: str, dataset: str) -> str:
    return _DATASET_PROTOCOL.get(dataset, DEFAULT_PROTOCOL[task])


_CHOICES = {"align": ALIGNMENTS, "crop": CROPS, "range": RANGES, "clamp": CLAMPS,
            "reduction": REDUCTIONS, "resize": RESIZES, "fit": FITS, "pred_frame": FRAMES,
            "gt_frame": FRAMES}


def resolve(task: str, dataset, protocol: str | None = None, **overrides) -> Settings:
    """The settings of ``protocol`` on ``dataset`` (a preset name or preset), with each
    override that is not None applied last. ``ValueError`` names a bad choice."""
    preset = get_preset(dataset)
    if preset.task != task:
        raise ValueError(f"dataset {preset.name} holds {preset.task} ground truth, not {task}")
    name = protocol or default_protocol(task, preset.name)
    if name not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {name!r}")
    chosen = PROTOCOLS[name]
    if chosen.task != task:
        raise ValueError(f"protocol {name} scores {chosen.task}, not {task}")
    min_depth, max_depth = preset.depth_range
    base = Settings(task=task, dataset=preset.name, protocol=name, source=chosen.source,
                    min_depth=min_depth, max_depth=max_depth, num_classes=preset.num_classes,
                    gt_frame=preset.options.get("frame", "opengl"))
    settings = replace(base, **{**chosen.choices, **chosen.per_dataset.get(preset.name, {})})
    settings = apply_overrides(settings, overrides)
    if settings.crop == "dataset":
        settings = replace(settings, crop=preset.crop)
    _check(settings)
    return settings


def apply_overrides(settings: Settings, overrides: dict) -> Settings:
    """``settings`` with every override that is not None, each checked by name and value."""
    known = {f.name for f in fields(Settings)}
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in known:
            raise TypeError(f"unknown setting {key!r}")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ValueError(f"{key.replace('_', '-')} must be one of "
                             f"{', '.join(_CHOICES[key])}, got {value!r}")
        settings = replace(settings, **{key: value})
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    if settings.task != "depth" and settings.align != "none":
        raise ValueError(f"align applies to depth only, got align={settings.align} for "
                         f"{settings.task}")
    if settings.task == "seg" and settings.reduction != "pixel":
        raise ValueError("segmentation scores one confusion matrix over the dataset: "
                         "reduction must be pixel")
    if settings.task != "seg" and settings.resize == "logits":
        raise ValueError("resize logits applies to segmentation only")
    if settings.max_depth is not None and settings.max_depth <= settings.min_depth:
        raise ValueError(f"max-depth ({settings.max_depth}) must be above min-depth "
                         f"({settings.min_depth})")
    if settings.min_valid_pixels < 1:
        raise ValueError(f"min-valid-pixels must be >= 1, got {settings.min_valid_pixels}")
