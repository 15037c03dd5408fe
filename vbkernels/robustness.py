"""What lossy codecs do to decoded depth, normals and segmentation (``vbkernels robustness``).

:func:`robustness_report` encodes ground truth as images (the procedural scenes of
:mod:`vbkernels.scenes`, or the caller's own encoded images), passes every image through
each codec of :data:`CODEC_NAMES` and back, decodes, and scores the result with
:mod:`vbkernels.metrics`:

- depth: AbsRel and delta1 against the true depth (pixels closer than ``max_eval_depth``;
  decoded depth clamped there too, so a white pixel's +inf stays finite), and the share of
  pixels whose colour lies more than 10 units (0..255 scale) from the cube walk, i.e. that
  the codec pushed off the set of colours an encoder can produce;
- normals: mean and median angular error in degrees;
- segmentation: mIoU of the nearest palette colour, and mIoU over the pixels kept by
  ``max_distance=r`` (pixels farther than ``r`` from every palette colour are rejected and
  left out) with the share rejected. ``r`` defaults to half the smallest distance between
  two palette colours, so a kept pixel is unambiguous.

With user images (``images={"depth": ..., "normals": ..., "seg": ...}``, uint8
``(N, H, W, 3)``) the reference is the decode of the images themselves, so the table
measures only what the codec changed.

Codecs: PNG (lossless: the baseline), JPEG at quality 100/95/90/75 with Pillow's default
4:2:0 chroma subsampling plus JPEG q95 with 4:4:4, WebP lossy (q90, always 4:2:0) and
lossless, and H.264 (libx264 through PyAV, the frames of a task as one clip) in yuv420p and
yuv444p at CRF 0, 18 and 28. H.264 rows are skipped, with the reason, when PyAV or libx264
is missing. RGB reaches H.264 through swscale's default BT.601 limited-range conversion, as
in most pipelines, so even CRF 0 is not lossless.
"""

from __future__ import annotations

import io
import json
import math
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["CODEC_NAMES", "TASKS", "robustness_report", "format_markdown", "write_report"]

TASKS = ("depth", "normals", "seg")
OFF_WALK_UNITS = 10.0
MAX_EVAL_DEPTH = 80.0


@dataclass(frozen=True)
class Codec:
    name: str
    chroma: str  # "lossless", "4:4:4" or "4:2:0"
    run: Callable[[np.ndarray], tuple[np.ndarray, int]]  # (N, H, W, 3) uint8 -> (same, bytes)
    h264: bool = False


def _pillow(fmt: str, **options) -> Callable[[np.ndarray], tuple[np.ndarray, int]]:
    def run(frames: np.ndarray) -> tuple[np.ndarray, int]:
        from PIL import Image

        out, size = np.empty_like(frames), 0
        for i, frame in enumerate(frames):
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, format=fmt, **options)
            size += buffer.tell()
            buffer.seek(0)
            with Image.open(buffer) as img:
                out[i] = np.asarray(img.convert("RGB"))
        return out, size

    return run


def _h264(pix_fmt: str, crf: int) -> Callable[[np.ndarray], tuple[np.ndarray, int]]:
    def run(frames: np.ndarray) -> tuple[np.ndarray, int]:
        import av

        n, height, width, _ = frames.shape
        # libx264 wants even sizes (yuv420p needs them): pad by edge replication, crop after.
        padded = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        buffer = io.BytesIO()
        with av.open(buffer, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=30)
            stream.width, stream.height = padded.shape[2], padded.shape[1]
            stream.pix_fmt = pix_fmt
            stream.options = {"crf": str(crf), "preset": "medium"}
            for frame in padded:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        size = buffer.tell()
        buffer.seek(0)
        with av.open(buffer, mode="r") as container:
            from vbkernels.pipeline.sources import frame_rgb

            decoded = [frame_rgb(f) for f in container.decode(video=0)]
        if len(decoded) != n:
            raise RuntimeError(f"H.264 round trip returned {len(decoded)} frames for {n}")
        return np.stack(decoded)[:, :height, :width].copy(), size

    return run


def _all_codecs() -> tuple[Codec, ...]:
    codecs = [Codec("png", "lossless", _pillow("PNG"))]
    codecs += [Codec(f"jpeg q{q}", "4:2:0", _pillow("JPEG", quality=q)) for q in (100, 95, 90, 75)]
    codecs.append(Codec("jpeg q95 4:4:4", "4:4:4", _pillow("JPEG", quality=95, subsampling=0)))
    codecs.append(Codec("webp q90", "4:2:0", _pillow("WEBP", quality=90)))
    codecs.append(Codec("webp lossless", "lossless", _pillow("WEBP", lossless=True)))
    for pix_fmt, chroma in (("yuv420p", "4:2:0"), ("yuv444p", "4:4:4")):
        codecs += [
            Codec(f"h264 {pix_fmt} crf{crf}", chroma, _h264(pix_fmt, crf), h264=True)
            for crf in (0, 18, 28)
        ]
    return tuple(codecs)


CODECS = _all_codecs()
CODEC_NAMES = tuple(codec.name for codec in CODECS)


def h264_unavailable_reason() -> str | None:
    """Why H.264 rows cannot run here, or None when they can."""
    try:
        import av
    except ImportError:
        return "PyAV is not installed (pip install av)"
    if "libx264" not in av.codecs_available:
        return "this PyAV/FFmpeg build has no libx264 encoder"
    return None


def robustness_report(
    *,
    scenes: int = 6,
    height: int = 120,
    width: int = 160,
    seed: int = 0,
    images: dict | None = None,
    palette="cityscapes",
    codecs=None,
    max_distance: float | None = None,
    device="cpu",
    backend: str = "auto",
    log: Callable[[str], None] | None = None,
) -> dict:
    """Score every codec; returns a JSON-ready dict (``rows``, ``skipped``, ``notes``, ``config``).

    ``codecs`` is a subset of :data:`CODEC_NAMES` (default: all). ``images`` replaces the
    procedural scenes by the caller's encoded images (see the module docstring). ``log``
    receives one line per codec as it finishes.
    """
    from vbkernels.palettes import load_palette

    palette = load_palette(palette)
    selected = _select_codecs(codecs)
    device = torch.device(device)
    if max_distance is None:
        max_distance = _half_min_palette_gap(palette.colors)
    elif (
        isinstance(max_distance, bool)
        or not isinstance(max_distance, (int, float))
        or not max_distance > 0
    ):
        raise ValueError(f"max_distance must be a number > 0 or None, got {max_distance!r}")
    scorer = _Scorer(palette, float(max_distance), device, backend)
    if images is None:
        encoded, truth = _scene_inputs(scenes, height, width, seed, palette)
        truth = {key: value.to(device) for key, value in truth.items()}
        source = f"{scenes} procedural scenes of {height}x{width} (seed {seed})"
    else:
        encoded = _check_images(images)
        truth = scorer.decode_truth(encoded)
        source = "user images: " + ", ".join(
            f"{task} {tuple(rgb.shape)}" for task, rgb in encoded.items()
        )
    h264_missing = h264_unavailable_reason()
    rows, skipped = [], []
    for codec in selected:
        if codec.h264 and h264_missing:
            skipped.append({"codec": codec.name, "reason": h264_missing})
            continue
        row = {"codec": codec.name, "chroma": codec.chroma}
        row.update(scorer.score(codec, encoded, truth))
        rows.append(row)
        if log:
            log(_row_line(row))
    config = {
        "source": source,
        "palette": palette.name,
        "max_distance": float(max_distance),
        "max_eval_depth": MAX_EVAL_DEPTH,
        "off_walk_units": OFF_WALK_UNITS,
        "device": str(device),
        "backend": backend,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    return {"config": config, "rows": rows, "skipped": skipped, "notes": _notes(rows)}


class _Scorer:
    """Decodes degraded images and scores them against the truth."""

    def __init__(self, palette, max_distance: float, device: torch.device, backend: str):
        self.palette = palette
        self.colors = palette.colors.to(device)
        self.max_distance = max_distance
        self.device = device
        self.backend = backend

    def decode_truth(self, encoded: dict) -> dict:
        import vbkernels

        truth = {}
        for task, rgb in encoded.items():
            rgb = torch.from_numpy(rgb).to(self.device)
            if task == "depth":
                truth["depth"] = vbkernels.decode_depth(rgb, backend=self.backend)
            elif task == "normals":
                truth["normals"] = vbkernels.decode_normals(rgb, backend=self.backend)
            else:
                truth["semantic"] = self._labels(rgb)
        return truth

    def score(self, codec: Codec, encoded: dict, truth: dict) -> dict:
        scores, compressed, pixels = {}, 0, 0
        for task, rgb in encoded.items():
            degraded, size = codec.run(rgb)
            compressed += size
            pixels += rgb.shape[0] * rgb.shape[1] * rgb.shape[2]
            degraded = torch.from_numpy(degraded).to(self.device)
            scores.update(getattr(self, f"_{task}")(degraded, truth))
        scores["bits_per_pixel"] = 8 * compressed / max(pixels, 1)
        return scores

    def _depth(self, rgb: torch.Tensor, truth: dict) -> dict:
        import vbkernels
        from vbkernels.metrics import depth_metrics

        depth, distance = vbkernels.decode_depth(rgb, return_distance=True, backend=self.backend)
        metrics = depth_metrics(depth, truth["depth"].to(depth.dtype), max_depth=MAX_EVAL_DEPTH)
        off_walk = (distance > OFF_WALK_UNITS).double().mean()
        return {
            "depth_abs_rel": metrics["abs_rel"],
            "depth_delta1": metrics["delta1"],
            "depth_off_walk_pct": 100 * float(off_walk),
        }

    def _normals(self, rgb: torch.Tensor, truth: dict) -> dict:
        import vbkernels
        from vbkernels.metrics import normal_metrics

        metrics = normal_metrics(
            vbkernels.decode_normals(rgb, backend=self.backend), truth["normals"]
        )
        return {"normals_mean_deg": metrics["mean"], "normals_median_deg": metrics["median"]}

    def _seg(self, rgb: torch.Tensor, truth: dict) -> dict:
        from vbkernels.metrics import segmentation_metrics

        k, target = len(self.palette), truth["semantic"]
        nearest = segmentation_metrics(
            self._labels(rgb), target, k, ignore_index=self.palette.ignore_index
        )
        labels = self._labels(rgb, max_distance=self.max_distance)
        kept = labels != self.palette.ignore_index
        filtered = segmentation_metrics(
            labels, target, k, ignore_index=self.palette.ignore_index, mask=kept
        )
        return {
            "seg_miou": nearest["miou"],
            "seg_miou_kept": filtered["miou"],
            "seg_rejected_pct": 100 * (1 - float(kept.double().mean())),
        }

    def _labels(self, rgb: torch.Tensor, max_distance=None) -> torch.Tensor:
        import vbkernels

        return vbkernels.decode_segmentation(
            rgb,
            self.colors,
            max_distance=max_distance,
            ignore_index=self.palette.ignore_index,
            backend=self.backend,
        )


def _scene_inputs(scenes: int, height: int, width: int, seed: int, palette) -> tuple[dict, dict]:
    """Encoded uint8 NumPy images and the true maps of procedural scenes (all on the CPU)."""
    import vbkernels
    from vbkernels.scenes import make_scenes

    truth = make_scenes(scenes, height, width, seed=seed)
    labels_needed = int(truth["semantic"].max()) + 1 if truth["semantic"].numel() else 0
    if len(palette) < labels_needed:
        raise ValueError(
            f"palette {palette.name!r} has {len(palette)} classes but the scenes use Cityscapes "
            f"train ids up to {labels_needed - 1}; use palette='cityscapes' or pass images="
        )
    encoded = {
        "depth": vbkernels.encode_depth(truth["depth"]),
        "normals": vbkernels.encode_normals(truth["normals"]),
        "seg": vbkernels.encode_segmentation(
            truth["semantic"], palette.colors, ignore_color=palette.ignore_color
        ),
    }
    return {task: rgb.numpy() for task, rgb in encoded.items()}, truth


def _check_images(images) -> dict:
    if not isinstance(images, dict) or not images:
        raise TypeError(
            f"images must be a non-empty dict with keys from {TASKS}, got {type(images).__name__}"
        )
    checked = {}
    for task, rgb in images.items():
        if task not in TASKS:
            raise ValueError(f"images keys must be among {TASKS}, got {task!r}")
        array = rgb.cpu().numpy() if isinstance(rgb, torch.Tensor) else np.asarray(rgb)
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or 0 in array.shape:
            raise ValueError(
                f"images[{task!r}] must be non-empty uint8 (N, H, W, 3), "
                f"got {array.dtype} {array.shape}"
            )
        checked[task] = np.ascontiguousarray(array)
    return checked


def _select_codecs(codecs) -> tuple[Codec, ...]:
    if codecs is None:
        return CODECS
    names = [codecs] if isinstance(codecs, str) else list(codecs)
    unknown = [name for name in names if name not in CODEC_NAMES]
    if unknown or not names:
        raise ValueError(f"codecs must be a non-empty subset of {CODEC_NAMES}, got {names!r}")
    return tuple(codec for codec in CODECS if codec.name in names)


def _half_min_palette_gap(colors: torch.Tensor) -> float:
    """Half the smallest distance between two distinct palette colours (255 for one colour)."""
    c = colors.double()
    gaps = torch.cdist(c, c)
    gaps = gaps[gaps > 0]
    return float(gaps.min()) / 2 if gaps.numel() else 255.0


# --------------------------------------------------------------------------- output

# (key, header, format) of the table's columns after the codec name.
_COLUMNS = (
    ("chroma", "chroma", "{}"),
    ("bits_per_pixel", "bits/px", "{:.2f}"),
    ("depth_abs_rel", "depth AbsRel", "{:.4f}"),
    ("depth_delta1", "depth δ1", "{:.4f}"),
    ("depth_off_walk_pct", "off walk >10 %", "{:.2f}"),
    ("normals_mean_deg", "normals mean °", "{:.2f}"),
    ("normals_median_deg", "normals median °", "{:.2f}"),
    ("seg_miou", "seg mIoU", "{:.4f}"),
    ("seg_miou_kept", "seg mIoU kept (r)", "{:.4f}"),
    ("seg_rejected_pct", "seg rejected %", "{:.2f}"),
)


def _cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None:
        return "—"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return fmt.format(value)


def _row_line(row: dict) -> str:
    return f"{row['codec']:<20} " + " ".join(
        f"{key}={_cell(row, key, fmt)}" for key, _, fmt in _COLUMNS[1:]
    )


def format_markdown(report: dict) -> str:
    """The report as Markdown: configuration, table, skipped codecs and notes."""
    config = report["config"]
    lines = [
        "# vbkernels codec robustness",
        "",
        f"Input: {config['source']}; palette {config['palette']}; device {config['device']}, "
        f"backend {config['backend']}. Depth scored on pixels closer than "
        f"{config['max_eval_depth']:g} m; 'off walk' = share of pixels more than "
        f"{config['off_walk_units']:g} units (of 255) from the cube walk; 'seg mIoU kept' leaves "
        f"out pixels farther than r = {config['max_distance']:g} from every palette colour.",
        "",
        "| codec | " + " | ".join(header for _, header, _ in _COLUMNS) + " |",
        "|---|" + "---|" * len(_COLUMNS),
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['codec']} | "
            + " | ".join(_cell(row, key, fmt) for key, _, fmt in _COLUMNS)
            + " |"
        )
    if report["skipped"]:
        lines += ["", "Skipped:"] + [f"- {s['codec']}: {s['reason']}" for s in report["skipped"]]
    if report["notes"]:
        lines += ["", "Notes:"] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def _notes(rows: list[dict]) -> list[str]:
    """What chroma subsampling does, measured on pairs of rows that differ only in it."""
    by_name = {row["codec"]: row for row in rows}
    pairs = [("jpeg q95", "jpeg q95 4:4:4")]
    pairs += [(f"h264 yuv420p crf{crf}", f"h264 yuv444p crf{crf}") for crf in (0, 18, 28)]
    notes = []
    compared = (
        ("depth_abs_rel", "depth AbsRel {:.4f}"),
        ("depth_off_walk_pct", "off walk {:.2f}%"),
        ("normals_mean_deg", "normals {:.2f}°"),
        ("seg_miou", "mIoU {:.4f}"),
    )
    for sub, full in pairs:
        if sub in by_name and full in by_name:
            a, b = by_name[sub], by_name[full]
            parts = [
                f"{text.format(a[key])} vs {text.format(b[key]).split(' ')[-1]}"
                for key, text in compared
                if key in a
            ]
            notes.append(f"{sub} (4:2:0) vs {full} (4:4:4): " + ", ".join(parts) + ".")
    if notes:
        notes.append(
            "Chroma subsampling (4:2:0) keeps one colour sample per 2x2 block, so wherever the "
            "colour changes inside a block it is blended. Depth: the walk changes hue along its "
            "length, so a blend at a depth edge falls off the walk and decodes to a depth between "
            "the two sides (the 'off walk' column counts such pixels; delta1 drops below 1). "
            "Normals: the damage sits at creases, so the mean error grows far more than the "
            "median. Segmentation: a blend of two class colours gets a wrong nearest colour, "
            "sometimes a class absent from the image (Cityscapes bus and train are 20 units "
            "apart), which costs a whole class in mIoU; max_distance rejects most of these pixels "
            "('seg rejected %') and lifts mIoU on the pixels it keeps."
        )
    return notes


def plot_png(report: dict) -> bytes:
    """Bar charts per codec of depth AbsRel, off-walk share, normals mean error and mIoU
    (those of the tasks scored)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = report["rows"]
    names = [row["codec"] for row in rows]
    colours = [
        "tab:green"
        if row["chroma"] == "lossless"
        else "tab:blue"
        if row["chroma"] == "4:4:4"
        else "tab:orange"
        for row in rows
    ]
    panels = (
        ("depth_abs_rel", "depth AbsRel"),
        ("depth_off_walk_pct", f"% pixels > {OFF_WALK_UNITS:g} units off the walk"),
        ("normals_mean_deg", "normals mean angular error (°)"),
        ("seg_miou", "segmentation mIoU (nearest colour)"),
    )
    panels = [(key, title) for key, title in panels if key in rows[0]]  # tasks that were scored
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.5 * len(panels), 5), constrained_layout=True, squeeze=False
    )
    for ax, (key, title) in zip(axes.flat, panels):
        ax.bar(range(len(rows)), [row[key] for row in rows], color=colours)
        ax.set_title(title)
        ax.set_xticks(range(len(rows)), names, rotation=60, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Decoding after lossy codecs (green lossless, blue 4:4:4, orange 4:2:0)")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def write_report(report: dict, out_dir, *, plot: bool = True) -> list[Path]:
    """Write ``robustness.md``, ``robustness.json`` and (with matplotlib) ``robustness.png``
    into ``out_dir`` atomically; returns the paths written."""
    from vbkernels.files import write_atomic

    out_dir = Path(out_dir)
    outputs = {
        "robustness.md": format_markdown(report).encode(),
        "robustness.json": (json.dumps(report, indent=2, allow_nan=True) + "\n").encode(),
    }
    if plot and report["rows"]:
        outputs["robustness.png"] = plot_png(report)
    paths = []
    for name, data in outputs.items():
        write_atomic(out_dir / name, data, overwrite=True)
        paths.append(out_dir / name)
    return paths
