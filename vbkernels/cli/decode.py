"""``vbkernels decode depth|normals|seg|instances``: images and videos in, arrays out.

Per input frame, written next to each other under OUTDIR (a video ``clip.mp4`` gets a
folder ``clip/`` with one set per frame, ``000000.depth.npy`` ...):

========== ============================== ============================================
task       always                         with --preview
========== ============================== ============================================
depth      NAME.depth.npy  float32 metres NAME.depth.preview.png (colormap + colourbar)
           NAME.depth.png  uint16, 16-bit depth PNG (see below)
normals    NAME.normals.npy float32 (H,W,3) NAME.normals.preview.png (normals as RGB)
seg        NAME.seg.npy    uint8/int32    NAME.seg.preview.png (palette colours + legend)
           NAME.seg.png    label PNG (8-bit, 16-bit above 255 classes)
instances  NAME.instances.npy int32       NAME.instances.preview.png (fixed colours, edges)
           NAME.instances.png uint16 (-1 'near no colour' written as 65535)
========== ============================== ============================================

16-bit depth PNG: ``value = round(depth_m * png_scale)`` with ``png_scale = 1000``
(millimetres, the NYUv2/ScanNet convention) by default; ``--png-scale 256`` gives the KITTI
depth benchmark's encoding (``depth_m = value / 256``). 0 means invalid: NaN, +inf (white)
and depths that do not fit in 16 bits (above 65.535 m in millimetres) are written as 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click
import numpy as np
import torch

from . import io as vio
from .previews import depth_preview_png, instance_preview_png, seg_preview_png

BACKEND_CHOICE = click.Choice(["auto", "torch", "triton", "cuda", "cpu", "numpy"])


@dataclass
class Task:
    """What one subcommand decodes and writes; ``decode`` maps a uint8 batch to arrays."""

    name: str
    decode: Callable[[torch.Tensor], dict]
    write: Callable[[dict, Path, bool], None]
    outputs: Callable[[Path], list]


@dataclass
class RunStats:
    frames: int = 0
    seconds: float = 0.0
    failed: dict = field(default_factory=dict)  # input -> first error message


def common_options(func):
    """Options every decode subcommand shares (applied bottom-up, shown top-down)."""
    options = [
        click.argument("inputs", nargs=-1, required=True),
        click.option("-o", "--output", "outdir", required=True,
                     type=click.Path(file_okay=False, path_type=Path),
                     help="Directory for the outputs (created when missing)."),
        click.option("--backend", default="auto", show_default=True, type=BACKEND_CHOICE,
                     help="Kernel backend (auto picks the fastest for the device)."),
        click.option("--device", default="auto", show_default=True,
                     help="auto (CUDA when available), cpu, cuda or cuda:N."),
        click.option("--batch-size", default=16, show_default=True,
                     type=click.IntRange(min=1), help="Frames decoded per call."),
        click.option("--preview", is_flag=True, help="Also write colourised preview PNGs."),
        click.option("--overwrite", is_flag=True, help="Replace existing outputs."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group("decode")
def decode():
    """Decode generated images and videos into depth, normals or labels.

    INPUT may be image files (PNG, JPEG, WebP), videos (MP4, MKV, WebM), directories
    (searched recursively) or glob patterns. Frames stream through in batches.
    """


@decode.command("depth")
@common_options
@click.option("--lam", default=-3.0, show_default=True, type=float,
              help="Power-transform lambda (< -1).")
@click.option("--c", "c", default=10 / 3, show_default="10/3", type=float,
              help="Power-transform scale c (> 0).")
@click.option("--max-depth", default=None, type=float,
              help="Clamp depths above this many metres (white is +inf otherwise).")
@click.option("--png-scale", default=1000.0, show_default=True, type=float,
              help="16-bit PNG units per metre: 1000 = millimetres, 256 = KITTI.")
def depth_command(inputs, outdir, backend, device, batch_size, preview, overwrite, quiet,
                  lam, c, max_depth, png_scale):
    """Metric depth (metres) from cube-walk RGB."""
    import vbkernels

    if not png_scale > 0:
        raise click.BadParameter(f"must be > 0, got {png_scale}", param_hint="--png-scale")
    _check_preview(preview)
    try:  # validate lam/c/max_depth once, before any file is read
        vbkernels.decode_depth(torch.zeros(1, 1, 3, dtype=torch.uint8), lam=lam, c=c,
                               max_depth=max_depth, backend="torch")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    def run(rgb):
        return {"depth": vbkernels.decode_depth(rgb, lam=lam, c=c, max_depth=max_depth,
                                                backend=backend)}

    def write(out, stem, overwrite):
        depth = out["depth"]
        _save(stem, ".depth.npy", vio.npy_bytes(depth), overwrite)
        _save(stem, ".depth.png", vio.png_bytes(depth_to_png16(depth, png_scale)), overwrite)
        if preview:
            _save(stem, ".depth.preview.png", depth_preview_png(depth), overwrite)

    suffixes = [".depth.npy", ".depth.png"] + ([".depth.preview.png"] if preview else [])
    _run(Task("depth", run, write, _outputs(suffixes)), inputs, outdir, backend, device,
         batch_size, overwrite, quiet)


@decode.command("normals")
@common_options
@click.option("--convention", type=click.Choice(["opengl", "opencv"]), default="opengl",
              show_default=True, help="Camera frame of the output vectors.")
def normals_command(inputs, outdir, backend, device, batch_size, preview, overwrite, quiet,
                    convention):
    """Unit surface normals (H, W, 3) from RGB."""
    import vbkernels

    def run(rgb):
        return {"normals": vbkernels.decode_normals(rgb, convention=convention, backend=backend)}

    def write(out, stem, overwrite):
        normals = out["normals"]
        _save(stem, ".normals.npy", vio.npy_bytes(normals), overwrite)
        if preview:
            colours = vbkernels.encode_normals(torch.from_numpy(normals), convention=convention)
            _save(stem, ".normals.preview.png", vio.png_bytes(colours.numpy()), overwrite)

    suffixes = [".normals.npy"] + ([".normals.preview.png"] if preview else [])
    _run(Task("normals", run, write, _outputs(suffixes)), inputs, outdir, backend, device,
         batch_size, overwrite, quiet)


@decode.command("seg")
@common_options
@click.option("--palette", "palette_spec", default="cityscapes", show_default=True,
              help="cityscapes, ade20k, voc, or a palette file (.csv name,r,g,b or .json).")
@click.option("--max-distance", default=None, type=float,
              help="Pixels farther than this (0..255 units) from every palette colour get "
                   "the palette's ignore index.")
def seg_command(inputs, outdir, backend, device, batch_size, preview, overwrite, quiet,
                palette_spec, max_distance):
    """Semantic labels by nearest palette colour."""
    import vbkernels
    from vbkernels.palettes import load_palette

    try:
        palette = load_palette(palette_spec)
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(str(exc), param_hint="--palette") from None
    if max_distance is not None and not max_distance >= 0:
        raise click.BadParameter(f"must be >= 0, got {max_distance}", param_hint="--max-distance")
    label_dtype = torch.uint8 if max(len(palette) - 1, palette.ignore_index) <= 255 else torch.int32

    def run(rgb):
        colors = palette.colors.to(rgb.device)
        labels = vbkernels.decode_segmentation(
            rgb, colors, max_distance=max_distance, ignore_index=palette.ignore_index,
            out_dtype=label_dtype, backend=backend)
        return {"labels": labels}

    def write(out, stem, overwrite):
        labels = out["labels"]
        _save(stem, ".seg.npy", vio.npy_bytes(labels), overwrite)
        _save(stem, ".seg.png", vio.png_bytes(labels_to_png(labels)), overwrite)
        if preview:
            _save(stem, ".seg.preview.png", seg_preview_png(labels, palette), overwrite)

    suffixes = [".seg.npy", ".seg.png"] + ([".seg.preview.png"] if preview else [])
    _run(Task("seg", run, write, _outputs(suffixes)), inputs, outdir, backend, device,
         batch_size, overwrite, quiet)


@decode.command("instances")
@common_options
@click.option("--max-distance", default=40.0, show_default=True, type=float,
              help="Pixels farther than this from every found colour get -1.")
@click.option("--min-pixels", default=64, show_default=True, type=click.IntRange(min=1),
              help="Smallest instance, in pixels.")
def instances_command(inputs, outdir, backend, device, batch_size, preview, overwrite, quiet,
                      max_distance, min_pixels):
    """Instance masks: each image's own colours found by clustering (0 = background)."""
    decode_instances = load_decode_instances()

    def run(rgb):
        labels, colours, counts = decode_instances(
            rgb, max_distance=max_distance, min_pixels=min_pixels, backend=backend)
        return {"labels": labels, "colours": colours}

    def write(out, stem, overwrite):
        labels = out["labels"]
        _save(stem, ".instances.npy", vio.npy_bytes(labels), overwrite)
        _save(stem, ".instances.png", vio.png_bytes(labels.astype(np.uint16)), overwrite)
        if preview:
            _save(stem, ".instances.preview.png", instance_preview_png(labels), overwrite)

    suffixes = [".instances.npy", ".instances.png"] + (
        [".instances.preview.png"] if preview else [])
    _run(Task("instances", run, write, _outputs(suffixes)), inputs, outdir, backend, device,
         batch_size, overwrite, quiet)


def load_decode_instances():
    """``vbkernels.decode_instances`` (exported at the top level, or its module)."""
    try:
        from vbkernels import decode_instances
    except ImportError:
        try:
            from vbkernels.instances import decode_instances
        except ImportError as exc:
            raise click.ClickException(
                "instance decoding (vbkernels.decode_instances) is not available in this "
                f"installation ({exc})") from None
    return decode_instances


# ----------------------------------------------------------------------------- the loop


def _run(task: Task, inputs, outdir: Path, backend: str, device: str, batch_size: int,
         overwrite: bool, quiet: bool) -> None:
    """Stream every input through ``task``; report failures and exit 1 if there were any."""
    from tqdm import tqdm

    torch_device = resolve_device(device)
    sources, input_errors = vio.expand_inputs(inputs)
    stats = RunStats()
    for item, message in input_errors:
        _fail(stats, item, message)
    sources = _drop_clashes_and_existing(sources, task, outdir, overwrite, stats)
    totals = [vio.frame_count(s) for s in sources]
    total = sum(totals) if all(t is not None for t in totals) else None

    def on_read_error(source, exc):
        _fail(stats, str(source.path), f"cannot read: {exc}")

    frames = vio.iter_frames(sources, on_read_error)
    with tqdm(total=total, unit="frame", disable=quiet, dynamic_ncols=True,
              desc=f"decode {task.name}") as progress:
        for batch in vio.batched(frames, batch_size):
            start = time.perf_counter()
            try:
                outputs = _decode_batch(task, batch, torch_device)
            except (RuntimeError, ValueError) as exc:  # e.g. a backend that cannot run here
                raise click.ClickException(f"decoding failed: {exc}") from None
            stats.seconds += time.perf_counter() - start
            for i, frame in enumerate(batch):
                if str(frame.source.path) in stats.failed:
                    continue
                try:
                    task.write({k: v[i] for k, v in outputs.items()}, _stem(frame, outdir),
                               overwrite)
                except (vio.OutputExists, OSError, ValueError) as exc:
                    _fail(stats, str(frame.source.path), str(exc))
            stats.frames += len(batch)
            progress.update(len(batch))
    _summarise(task, stats, sources, quiet)


def _decode_batch(task: Task, batch, device: torch.device) -> dict:
    rgb = torch.from_numpy(np.stack([frame.rgb for frame in batch]))
    if device.type == "cuda":
        rgb = rgb.pin_memory().to(device, non_blocking=True)
    outputs = task.decode(rgb)
    return {name: value.cpu().numpy() for name, value in outputs.items()}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise click.BadParameter(f"not a torch device: {device!r}", param_hint="--device") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available on this machine", param_hint="--device")
    return chosen


def _drop_clashes_and_existing(sources, task, outdir, overwrite, stats):
    """Inputs whose outputs would collide with an earlier input's, or (without
    --overwrite) whose first frame's outputs exist, fail before any decoding."""
    kept, claimed = [], {}
    for source in sources:
        stem = outdir / source.stem
        if stem in claimed:
            _fail(stats, str(source.path),
                  f"its outputs would overwrite those of {claimed[stem]} (same name)")
            continue
        claimed[stem] = source.path
        first = _stem(vio.Frame(source, 0, None), outdir)
        existing = [p for p in task.outputs(first) if p.exists()]
        if existing and not overwrite:
            _fail(stats, str(source.path), f"{existing[0]} exists (pass --overwrite to replace it)")
            continue
        kept.append(source)
    return kept


def _stem(frame: vio.Frame, outdir: Path) -> Path:
    if frame.source.kind == "video":
        return outdir / frame.source.stem / f"{frame.index:06d}"
    return outdir / frame.source.stem


def _outputs(suffixes):
    return lambda stem: [stem.with_name(stem.name + s) for s in suffixes]


def _save(stem: Path, suffix: str, data: bytes, overwrite: bool) -> None:
    vio.write_atomic(stem.with_name(stem.name + suffix), data, overwrite=overwrite)


def _fail(stats: RunStats, item: str, message: str) -> None:
    if item not in stats.failed:
        stats.failed[item] = message
        click.echo(f"error: {item}: {message}", err=True)


def _summarise(task: Task, stats: RunStats, sources, quiet: bool) -> None:
    rate = stats.frames / stats.seconds if stats.seconds > 0 else float("nan")
    if not quiet:
        click.echo(f"decoded {stats.frames} frame(s) from {len(sources)} input(s) "
                   f"({rate:.1f} frames/s in the decoder)", err=True)
    if stats.failed:
        raise click.ClickException(f"{len(stats.failed)} input(s) failed; see the errors above")


def _check_preview(preview: bool) -> None:
    if preview:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise click.UsageError("--preview for depth needs matplotlib: pip install matplotlib") from None


# ------------------------------------------------------------------- output conversions


def depth_to_png16(depth: np.ndarray, scale: float) -> np.ndarray:
    """uint16 ``round(depth * scale)``; 0 (invalid) for NaN, inf and values past 65535."""
    with np.errstate(invalid="ignore"):
        rounded = np.rint(np.asarray(depth, dtype=np.float64) * scale)
        valid = np.isfinite(rounded) & (rounded >= 0) & (rounded <= 65535)
    return np.where(valid, rounded, 0).astype(np.uint16)


def labels_to_png(labels: np.ndarray) -> np.ndarray:
    return labels.astype(np.uint8) if labels.max(initial=0) <= 255 else labels.astype(np.uint16)
