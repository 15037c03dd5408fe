"""The scoring loop: predictions decoded through the pipeline, scored on the device.

Per batch: worker processes read each prediction file (``vbkernels.pipeline.read_image``)
and its ground truth (the preset's reader); same-size frames are stacked, uploaded and
decoded on the device in one call (the task ``build_task`` checked); then, per image and
still on the device,

1. undo the generator's framing (``fit``): ``none`` needs the ground truth's size exactly,
   ``resize`` stretches, ``letterbox`` cuts the padding bars first, ``center-crop`` scores
   only the centred region of the ground truth with the frame's aspect;
2. resize the decoded values (never the RGB: blended colours leave the walk and the
   palette) with ``resize``; normals are renormalised after resizing, labels use nearest
   (or ``resize="logits"``, MMSegmentation's way: when the sizes differ the frame's palette
   logits are resized bilinearly and the argmax taken);
3. KITTI's benchmark crop (``kb``) cuts both to 352 x 1216, and the crop's rectangle is
   cut out; the valid mask is the reader's (and ``center-crop``'s region);
4. ``vbkernels.metrics`` accumulates: the depth range (``strict`` / ``inclusive``),
   ``min_valid_pixels``, alignment, clamping and reduction as the settings say.

Predictions can also be arrays (``pred_format="npy"``: metres / unit normals / labels;
``"png16"``: 16-bit depth PNG ``/ png_scale``) or colormap-painted depth
(``decoder="colormap:NAME"`` with ``vmin``/``vmax``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vbkernels.pipeline import build_task, read_frames, read_image, resolve_device
from vbkernels.pipeline.local import default_workers, make_pool

from . import datasets
from .pairing import list_predictions, pair
from .protocols import Settings, resolve

OFF_WALK_DISTANCE = 8.0  # colour units: farther from the walk / colormap than this is "off"
OFF_SPHERE = 0.1         # normals: | |2c/255 - 1| - 1 | above this is "off the sphere"
_HIST_BINS = 100


class EvalError(ValueError):
    """A user error of an evaluation (the message names the file or option)."""


@dataclass
class EvalResult:
    """What an evaluation found. ``metrics`` as ``vbkernels.metrics`` names them;
    ``per_image`` one dict per scored image; ``count`` expected/found/missing/failed."""

    settings: Settings
    metrics: dict
    count: dict
    per_image: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    unused: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    split_sha256: str | None = None
    histogram: dict | None = None
    worst: list = field(default_factory=list)  # (score, name, pred, gt, valid), worst first
    confusion: np.ndarray | None = None
    class_names: tuple = ()
    inputs: dict = field(default_factory=dict)  # how predictions were read and paired


# ------------------------------------------------------------------------ file reading


def _load_pair(preset, sample, pred_path, pred_format: str, png_scale: float):
    """Worker side: (prediction frame or array, ground truth, valid) or an error string."""
    try:
        pred = _read_prediction(Path(pred_path), pred_format, png_scale)
    except Exception as exc:  # noqa: BLE001 - any reader error is this file's failure
        return ("pred", f"{pred_path}: {exc}")
    try:
        gt, valid = datasets.read_ground_truth(preset, sample)
    except datasets.DatasetError as exc:
        return ("gt", str(exc))
    return pred, gt, valid


def _read_prediction(path: Path, pred_format: str, png_scale: float) -> np.ndarray:
    if pred_format == "image":
        return read_image(path)
    if pred_format == "npy":
        return np.load(path, allow_pickle=False)
    from PIL import Image

    with Image.open(path) as image:
        raw = np.asarray(image)
    if raw.ndim != 2 or raw.dtype != np.uint16 and raw.dtype != np.int32:
        raise ValueError(f"expected a 16-bit single-channel PNG, got {raw.dtype} {raw.shape}")
    depth = raw.astype(np.float32) / np.float32(png_scale)
    depth[raw == 0] = np.nan
    return depth


# ---------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class Decoder:
    """How an RGB batch becomes values on the device: ``decode(rgb)`` -> (values, health)
    with health the per-image share of pixels off the walk / colormap / sphere or
    rejected by the palette."""

    task: object  # a vbkernels.pipeline Task

    @property
    def health_name(self) -> str:
        """The per_image.csv column of the health share."""
        return {"depth": "off_walk", "colormap": "off_colormap", "normals": "off_sphere",
                "seg": "rejected"}[self.task.name]

    def decode(self, rgb: torch.Tensor):
        import vbkernels

        t = self.task
        if t.name == "depth":
            depth, distance = vbkernels.decode_depth(rgb, lam=t.lam, c=t.c, return_distance=True,
                                                     backend=t.backend)
            return depth, (distance > OFF_WALK_DISTANCE).flatten(1).float().mean(1)
        if t.name == "colormap":
            out = t.decode(rgb)
            off = (out["distance"] > OFF_WALK_DISTANCE).flatten(1).float().mean(1)
            return out["values"], off
        if t.name == "normals":
            normals, norm = vbkernels.decode_normals(rgb, return_norm=True, backend=t.backend)
            return normals, ((norm - 1).abs() > OFF_SPHERE).flatten(1).float().mean(1)
        labels = t.decode(rgb)["labels"].long()
        return labels, (labels == t.palette.ignore_index).flatten(1).float().mean(1)

    def logits(self, rgb: torch.Tensor) -> torch.Tensor:
        """(H, W, K) palette logits of one (H, W, 3) frame (``resize="logits"``)."""
        import vbkernels

        logits = vbkernels.segmentation_logits(rgb[None], self.task.palette, layout="hwc",
                                               backend="torch")
        return logits[0].movedim(0, -1)


def make_decoder(task: str, *, backend="auto", decoder: str | None = None, palette=None,
                 max_distance=None, vmin=None, vmax=None, lam=None, c=None) -> Decoder:
    """The decoder of ``task`` (``decoder="colormap:NAME"`` for colormap-painted depth)."""
    if decoder and decoder.startswith("colormap:"):
        if task != "depth":
            raise EvalError("--decoder colormap:NAME scores depth only")
        if vmin is None or vmax is None:
            raise EvalError("--decoder colormap:NAME needs --vmin and --vmax (metres)")
        return Decoder(build_task("colormap", colormap=decoder.split(":", 1)[1], vmin=vmin,
                                  vmax=vmax, backend=backend, max_distance=None))
    if decoder not in (None, "default"):
        raise EvalError(f"decoder must be 'default' or colormap:NAME, got {decoder!r}")
    options = {"backend": backend}
    if task == "depth":
        options.update({k: v for k, v in (("lam", lam), ("c", c)) if v is not None})
    if task == "seg":
        options.update(palette=palette, max_distance=max_distance)
    return Decoder(build_task(task, **options))


# ---------------------------------------------------------------------- geometry steps


def fit_to(pred: torch.Tensor, gt_shape: tuple, settings: Settings, name: str):
    """``pred`` (h, w[, C]) at the ground truth's size, and the region (bool (H, W)) of the
    ground truth it covers (see the module docstring, step 1-2)."""
    h, w = pred.shape[:2]
    H, W = gt_shape
    region = torch.ones(gt_shape, dtype=torch.bool, device=pred.device)
    if settings.fit == "none" or (h, w) == (H, W):
        if (h, w) != (H, W):
            raise EvalError(f"{name}: prediction is {h}x{w} but the ground truth is {H}x{W}; "
                            "pass --fit resize|letterbox|center-crop")
        return pred, region
    if settings.resize == "none":
        raise EvalError(f"{name}: prediction is {h}x{w}, ground truth {H}x{W}, and "
                        "--resize none")
    if settings.fit == "letterbox":
        scale = min(h / H, w / W)
        ch, cw = round(H * scale), round(W * scale)
        top, left = (h - ch) // 2, (w - cw) // 2
        return _resize(pred[top:top + ch, left:left + cw], (H, W), settings), region
    if settings.fit == "center-crop":
        scale = max(h / H, w / W)  # the generator saw the RGB scaled up, then centre-cropped
        ch, cw = min(H, round(h / scale)), min(W, round(w / scale))
        top, left = (H - ch) // 2, (W - cw) // 2
        inner = _resize(pred, (ch, cw), settings)
        full = torch.zeros((H, W, *pred.shape[2:]), dtype=inner.dtype, device=pred.device)
        full[top:top + ch, left:left + cw] = inner
        region = torch.zeros_like(region)
        region[top:top + ch, left:left + cw] = True
        return full, region
    return _resize(pred, (H, W), settings), region


def _resize(pred: torch.Tensor, size: tuple, settings: Settings) -> torch.Tensor:
    if tuple(pred.shape[:2]) == tuple(size):
        return pred
    if not pred.dtype.is_floating_point or settings.resize == "nearest":
        x = pred.reshape(*pred.shape[:2], -1).permute(2, 0, 1)[None].float()
        out = F.interpolate(x, size=size, mode="nearest-exact")
        return out[0].permute(1, 2, 0).reshape(*size, *pred.shape[2:]).to(pred.dtype)
    mode = {"bilinear": "bilinear", "bilinear-ac": "bilinear", "bicubic": "bicubic",
            "logits": "bilinear"}[settings.resize]
    align = True if settings.resize == "bilinear-ac" else False
    x = pred.reshape(*pred.shape[:2], -1).permute(2, 0, 1)[None]
    out = F.interpolate(x, size=size, mode=mode, align_corners=align)
    out = out[0].permute(1, 2, 0).reshape(*size, *pred.shape[2:])
    if settings.task == "normals":  # back onto the sphere
        out = out / out.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return out


def crop_box(crop: str, shape: tuple, name: str) -> tuple | None:
    """The (rows, columns) slices of a crop's rectangle, or None for no crop (KITTI's
    ``kb`` part is cut first, see :func:`kb_crop`). Every crop is a rectangle, so scoring
    cuts it out rather than masking: the same numbers, fewer pixels to sum."""
    H, W = shape
    part = crop.split("+")[-1]
    if part in ("none", "kb"):
        return None
    if crop == "eigen":
        if shape != (480, 640):
            raise EvalError(f"{name}: the NYUv2 Eigen crop needs 480x640 ground truth, got "
                            f"{H}x{W}; pass --crop none")
        return slice(45, 471), slice(41, 601)
    if part == "garg":
        return (slice(int(0.40810811 * H), int(0.99189189 * H)),
                slice(int(0.03594771 * W), int(0.96405229 * W)))
    # KITTI's Eigen crop ("eigen-kitti", or "eigen" after "kb+")
    return (slice(int(0.3324324 * H), int(0.91351351 * H)),
            slice(int(0.0359477 * W), int(0.96405229 * W)))


KB_SIZE = (352, 1216)


def kb_crop(x, name: str):
    """KITTI benchmark crop: bottom 352 rows, the centred 1216 columns. A prediction of
    exactly 352 x 1216 is taken as made from the KB-cropped RGB (only the ground truth is
    cut then)."""
    H, W = x.shape[:2]
    if H < 352 or W < 1216:
        raise EvalError(f"{name}: the KITTI benchmark crop needs at least 352x1216, got {H}x{W}")
    top, left = H - 352, (W - 1216) // 2
    return x[top:top + 352, left:left + 1216]


# ----------------------------------------------------------------------------- scoring


class _Scorer:
    """One task's accumulator (``vbkernels.metrics``), health shares and error histogram.
    Per-image rows come from the accumulator's ``per_image()`` at the end."""

    def __init__(self, settings: Settings, device, health_name: str = "health"):
        from vbkernels import metrics

        self.s = settings
        self.health_name = health_name
        self.names: list = []
        self.health: list = []
        self.hist = torch.zeros(_HIST_BINS, dtype=torch.float64, device=device)
        if settings.task == "depth":
            self.total = metrics.DepthMetrics(**depth_metric_options(settings))
            self.edges = (-0.5, 0.5)  # ln(p / g)
        elif settings.task == "normals":
            self.total = metrics.NormalMetrics(**normal_metric_options(settings))
            self.edges = (0.0, 90.0)  # degrees
        else:
            categories = metrics.CITYSCAPES_CATEGORIES if settings.category_iou else None
            self.total = metrics.SegmentationMetrics(settings.num_classes, ignore_index=255,
                                                     categories=categories)
            self.edges = None

    def add(self, name, pred, gt, valid, health):
        from vbkernels import metrics

        self.names.append(name)
        self.health.append(health)
        task = self.s.task
        if task == "seg":
            self.total.update(pred[None], torch.where(valid, gt, 255)[None])
            return
        self.total.update(pred[None], gt[None], valid[None])
        if task == "depth":
            error = torch.log(pred / gt)
        else:
            p = metrics.convert_normals(pred, self.s.pred_frame, self.s.gt_frame)
            cross = torch.linalg.cross(p, gt.to(p.dtype)).norm(dim=-1)
            error = torch.rad2deg(torch.atan2(cross, (p * gt).sum(-1)))
        # histc leaves out values off its range (inf, and NaN): no compaction, no host sync
        error = torch.where(valid, error, math.inf).float()
        self.hist += torch.histc(error, _HIST_BINS, *self.edges).double()

    def result(self):
        """(metrics, per-image rows, confusion matrix or None, histogram or None)."""
        from vbkernels.metrics import to_output_units

        out = to_output_units(self.total.compute())
        confusion = None
        if self.s.task == "seg":
            confusion = out.pop("confusion_matrix").numpy()
            out.pop("unassigned", None)
        rows = self.total.per_image()
        rows = [{"name": n, **to_output_units({k: v for k, v in r.items()
                                               if not isinstance(v, list)}),
                 self.health_name: h}
                for n, r, h in zip(self.names, rows, self.health)]
        hist = None if self.edges is None else {"edges": self.edges,
                                                "counts": self.hist.cpu().tolist()}
        return out, rows, confusion, hist


def worst_score(task: str, row: dict) -> float:
    """What ranks an image as bad in plots/worst.png (higher is worse)."""
    value = {"depth": row.get("abs_rel"), "normals": row.get("mean"),
             "seg": 1 - row.get("pixel_accuracy", math.nan)}[task]
    return -math.inf if value is None or math.isnan(value) else value


def depth_metric_options(s: Settings) -> dict:
    """``DepthMetrics`` arguments of the settings."""
    return {"min_depth": s.min_depth, "max_depth": s.max_depth, "reduction": s.reduction,
            "alignment": s.align, "clamp": None if s.clamp == "none" else s.clamp,
            "range": s.range, "min_valid_pixels": s.min_valid_pixels}


def normal_metric_options(s: Settings) -> dict:
    return {"reduction": s.reduction, "frame": s.gt_frame, "pred_frame": s.pred_frame}


# ------------------------------------------------------------------------------ driver


def evaluate(task: str, predictions, *, dataset, gt_root, split=None, match: str | None = None,
             protocol: str | None = None, overrides: dict | None = None, device="auto",
             backend: str = "auto", batch_size: int = 8, workers: int | None = None,
             pred_format: str = "image", decoder: str | None = None, palette=None,
             max_distance=None, vmin=None, vmax=None, png_scale: float = 1000.0,
             pred_frame: str | None = None, worst_k: int = 4, progress=None) -> EvalResult:
    """Score ``predictions`` (paths, folders, globs) against ``dataset`` under ``gt_root``.

    ``dataset`` is a preset name or a :class:`~vbkernels.eval.datasets.DatasetPreset`
    (e.g. from ``folder_preset``); ``overrides`` maps setting names (``align``, ``crop``,
    ``min_depth`` ...) to values. ``progress(done, total)`` is called before the first
    image and after each batch, with the images handled so far and the number paired.
    Returns an :class:`EvalResult`; write it with ``vbkernels.eval.write_outputs``.
    """
    preset = datasets.get_preset(dataset)
    overrides = dict(overrides or {})
    if pred_frame is not None:
        overrides["pred_frame"] = pred_frame
    if preset.name == "folder":  # the folder layout's own range/classes are the defaults
        settings = _folder_settings(task, preset, protocol, overrides)
    else:
        settings = resolve(task, preset, protocol, **overrides)
    samples = datasets.list_samples(preset, gt_root, split)
    sources, errors = list_predictions(predictions, pred_format)
    pairing = pair(sources, samples, match or preset.options.get("match", "path"))
    errors = list(errors) + list(pairing.errors)
    dev = resolve_device(device)
    decode = None
    if pred_format == "image":
        palette = palette or preset.palette
        decode = make_decoder(task, backend=backend, decoder=decoder, palette=palette,
                              max_distance=max_distance, vmin=vmin, vmax=vmax)
    scorer = _Scorer(settings, dev, decode.health_name if decode is not None else "health")
    failed = _score_all(pairing.pairs, preset, settings, decode, scorer, dev, batch_size,
                        workers, pred_format, png_scale, errors, progress)
    metrics, rows, confusion, hist = scorer.result()
    count = {"expected": len(samples), "found": len(pairing.pairs),
             "missing": len(pairing.missing), "failed": failed}
    names = ()
    if task == "seg" and decode is not None:
        names = tuple(decode.task.palette.names)
    worst = _worst_images(rows, pairing.pairs, worst_k, preset, settings, decode, dev,
                          pred_format, png_scale)
    inputs = {"match": match or preset.options.get("match", "path"),
              "pred_format": pred_format, "decoder": decoder or "default",
              "palette": getattr(palette, "name", palette), "max_distance": max_distance,
              "device": str(dev), "backend": backend, "split": str(split) if split else None,
              "gt_root": str(gt_root)}
    return EvalResult(settings, metrics, count, rows, [s.name for s in pairing.missing],
                      pairing.unused, errors, datasets.split_lines_sha256(split), hist, worst,
                      confusion, names, inputs)


def _worst_images(rows, pairs, k, preset, settings, decode, dev, pred_format, png_scale):
    """The ``k`` worst images by :func:`worst_score`, read and decoded again (so only ``k``
    images are ever held for the plot): (score, name, pred, gt, valid) host arrays."""
    if not k or not rows:
        return []
    ranked = sorted(rows, key=lambda r: worst_score(settings.task, r), reverse=True)[:k]
    by_name = {sample.name: (sample, prediction) for sample, prediction in pairs}
    worst = []
    for row in ranked:
        sample, prediction = by_name[row["name"]]
        if prediction.source.kind != "image":
            continue  # a video frame: not read a second time
        loaded = _load_pair(preset, sample, str(prediction.source.path), pred_format,
                            png_scale)
        if isinstance(loaded[0], str):
            continue
        values, _, rgb = _decode_batch([loaded[0]], settings, decode, dev)
        pred, gt, valid = prepare(values[0], loaded[1], loaded[2], settings, sample.name,
                                  _logits_source(decode, rgb, 0))
        if settings.task == "normals":
            from vbkernels.metrics import convert_normals

            pred = convert_normals(pred, settings.pred_frame, settings.gt_frame)
        worst.append((worst_score(settings.task, row), sample.name, pred.cpu().numpy(),
                      gt.cpu().numpy(), valid.cpu().numpy()))
    return worst


def _folder_settings(task, preset, protocol, overrides):
    from dataclasses import replace

    from .protocols import PROTOCOLS, apply_overrides, default_protocol

    name = protocol or default_protocol(task, "folder")
    if name not in PROTOCOLS or PROTOCOLS[name].task != task:
        raise EvalError(f"protocol must be one of the {task} protocols "
                        f"{', '.join(k for k, v in PROTOCOLS.items() if v.task == task)}, "
                        f"got {name!r}")
    base = Settings(task=task, dataset="folder", protocol=name, source=PROTOCOLS[name].source,
                    min_depth=preset.depth_range[0], max_depth=preset.depth_range[1],
                    num_classes=preset.num_classes, gt_frame=preset.options["frame"])
    choices = {k: v for k, v in PROTOCOLS[name].choices.items() if k != "crop"}
    return apply_overrides(replace(base, **choices), overrides)


def _score_all(pairs, preset, settings, decode, scorer, dev, batch_size, workers,
               pred_format, png_scale, errors, progress) -> int:
    """Read in workers, decode in batches, score; the number of failed pairs."""
    if progress:
        progress(0, len(pairs))
    workers = min(default_workers() if workers is None else workers, max(len(pairs), 1))
    pool = make_pool(0 if len(pairs) < 2 else workers)
    failed = handled = 0
    batch: list = []

    def flush():
        nonlocal failed, handled, batch
        failed += _score_batch(batch, settings, decode, scorer, dev, errors)
        handled += len(batch)
        batch = []
        if progress:
            progress(handled, len(pairs))

    try:
        for item in _loaded(pool, pairs, preset, pred_format, png_scale, batch_size):
            if item[0] == "error":
                errors.append(item[1:])
                failed += 1
                handled += 1
                continue
            if batch and (len(batch) == batch_size or batch[-1][1].shape != item[1].shape):
                flush()
            batch.append(item)
        if batch:
            flush()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return failed


def _loaded(pool, pairs, preset, pred_format, png_scale, depth):
    """(name, prediction, gt, valid) in order, reading ahead ``2 * depth`` pairs; videos
    (``--match order``) are read frame by frame here."""
    from collections import deque

    video_frames = {}
    queue = deque()

    def submit(sample, prediction):
        source = prediction.source
        if source.kind == "video":
            frames = video_frames.setdefault(source.path, read_frames(source))
            rgb = next(frames)
            future = pool.submit(_load_gt_only, preset, sample, rgb)
        else:
            future = pool.submit(_load_pair, preset, sample, str(source.path), pred_format,
                                 png_scale)
        queue.append((sample, prediction, future))

    pending = iter(pairs)
    for sample, prediction in pending:
        submit(sample, prediction)
        if len(queue) >= 2 * max(depth, 1):
            break
    while queue:
        sample, prediction, future = queue.popleft()
        for nxt in pending:
            submit(*nxt)
            break
        out = future.result()
        if isinstance(out[0], str) and out[0] in ("pred", "gt"):
            yield ("error", prediction.name if out[0] == "pred" else sample.name, out[1])
            continue
        yield (sample.name, *out)


def _load_gt_only(preset, sample, rgb):
    try:
        gt, valid = datasets.read_ground_truth(preset, sample)
    except datasets.DatasetError as exc:
        return ("gt", str(exc))
    return rgb, gt, valid


def _decode_batch(preds: list, settings, decode, dev):
    """Same-size predictions -> (values on ``dev``, per-image health list, the RGB batch on
    ``dev`` or None for arrays)."""
    stacked = np.stack(preds)
    if decode is None:
        values = torch.from_numpy(stacked).to(dev)
        values = values.long() if settings.task == "seg" else values.float()
        return values, [math.nan] * len(preds), None  # arrays: no colours to check
    if stacked.dtype != np.uint8 or stacked.ndim != 4:
        raise EvalError(f"expected 8-bit RGB predictions, got {stacked.dtype} {stacked.shape[1:]}")
    rgb = torch.from_numpy(stacked)
    if dev.type == "cuda":
        rgb = rgb.pin_memory().to(dev, non_blocking=True)
    values, health = decode.decode(rgb)
    return values, health.cpu().tolist(), rgb


def _score_batch(batch, settings, decode, scorer, dev, errors) -> int:
    """Decode one same-size batch on ``dev`` and score each image; failures counted."""
    try:
        values, health, rgb = _decode_batch([item[1] for item in batch], settings, decode,
                                            dev)
    except (EvalError, ValueError, RuntimeError) as exc:
        errors += [(item[0], f"cannot decode: {exc}") for item in batch]
        return len(batch)
    failed = 0
    for i, (name, _, gt, valid) in enumerate(batch):
        logits = _logits_source(decode, rgb, i)
        try:
            pred, target, mask = prepare(values[i], gt, valid, settings, name, logits)
        except EvalError as exc:
            errors.append((name, str(exc)))
            failed += 1
            continue
        scorer.add(name, pred, target, mask, health[i])
    return failed


def _logits_source(decode, rgb, i):
    """A function giving frame ``i``'s palette logits (segmentation decoded from RGB)."""
    if decode is None or rgb is None or decode.task.name != "seg":
        return None
    return lambda: decode.logits(rgb[i])


def prepare(pred: torch.Tensor, gt: np.ndarray, valid: np.ndarray, settings: Settings,
            name: str, logits=None):
    """One image's prediction, target and valid mask on ``pred``'s device (steps 1-3).
    ``logits()`` gives the frame's palette logits, used instead of the labels when
    ``resize="logits"`` and the sizes differ."""
    dev = pred.device
    expected = {"depth": 2, "normals": 3, "seg": 2}[settings.task]
    if pred.dim() != expected:
        raise EvalError(f"{name}: expected a {settings.task} prediction of rank {expected}, "
                        f"got shape {tuple(pred.shape)}")
    target = torch.from_numpy(np.ascontiguousarray(gt)).to(dev)
    mask = torch.from_numpy(np.ascontiguousarray(valid)).to(dev)
    kb = settings.crop.startswith("kb")
    if kb and tuple(pred.shape[:2]) == KB_SIZE:  # generated from the KB-cropped RGB already
        target, mask = kb_crop(target, name), kb_crop(mask, name)
        kb = False
    by_logits = (settings.resize == "logits" and logits is not None and
                 tuple(pred.shape[:2]) != tuple(target.shape[:2]))
    pred, region = fit_to(logits() if by_logits else pred, tuple(target.shape[:2]), settings,
                          name)
    if by_logits:
        pred = pred.argmax(-1)
    mask &= region
    if kb:
        pred, target, mask = (kb_crop(x, name) for x in (pred, target, mask))
    box = crop_box(settings.crop, tuple(target.shape[:2]), name)
    if box is not None:
        pred, target, mask = (x[box] for x in (pred, target, mask))
    # Depth: DepthMetrics applies the range (strict / inclusive) and min_valid_pixels. Here
    # the count is read back only when a minimum above 1 asks for it (a sync per image).
    if settings.task != "depth" and settings.min_valid_pixels > 1 and \
            int(mask.sum()) < settings.min_valid_pixels:
        mask = torch.zeros_like(mask)
    return pred, target, mask
