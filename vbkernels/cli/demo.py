"""``vbkernels demo``: the whole round trip on procedural scenes, with errors and speed.

Scenes with exact depth, normals and Cityscapes labels (:mod:`vbkernels.scenes`) are
encoded in the Vision Banana convention, degraded as a generator and a codec would (slight
blur, JPEG, H.264 when PyAV is installed), decoded on the best backend, and scored against
the truth, next to the score of the lossless encoding (what 8 bits alone cost).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import click
import torch

from .decode import BACKEND_CHOICE

# Depth metrics use the KITTI cap: the sky plane (250 m) and anything past 80 m are left out.
EVAL_MAX_DEPTH = 80.0
# The panel draws one row per scene, up to this many (a taller panel is unreadable).
PANEL_MAX_SCENES = 4
DEFAULT_PANEL = "vbkernels_demo.png"  # listed in the repository's .gitignore
# Timed calls per task after a warm-up: one call's time on a shared machine swings many times
# over between runs (issue 24 saw 20x), their median much less.
DEFAULT_REPEATS = 5


@click.command("demo")
@click.option("-n", "--count", default=4, show_default=True, type=click.IntRange(min=1),
              help="Number of scenes.")
@click.option("--height", default=192, show_default=True, type=click.IntRange(min=8))
@click.option("--width", default=256, show_default=True, type=click.IntRange(min=8))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--jpeg-quality", default=90, show_default=True, type=click.IntRange(1, 100))
@click.option("--blur-sigma", default=0.5, show_default=True, type=click.FloatRange(min=0))
@click.option("--h264/--no-h264", default=None,
              help="Also pass the frames through H.264 (default: when PyAV is installed).")
@click.option("--device", default="auto", show_default=True,
              help="auto (CUDA when available), cpu or cuda.")
@click.option("--backend", default="auto", show_default=True, type=BACKEND_CHOICE,
              help="Kernel backend.")
@click.option("-o", "--output", "panel_path", default=DEFAULT_PANEL, show_default=True,
              type=click.Path(path_type=Path),
              help=f"Where to write the panel PNG (a folder, or a name without a suffix, "
                   f"gets {DEFAULT_PANEL} inside).")
@click.option("--no-panel", is_flag=True, help="Skip the PNG panel.")
@click.option("--repeats", default=DEFAULT_REPEATS, show_default=True,
              type=click.IntRange(min=1),
              help="Timed calls per task (after one warm-up); the median is reported.")
def demo(count, height, width, seed, jpeg_quality, blur_sigma, h264, device, backend,
         panel_path, no_panel, repeats):
    """Encode, degrade and decode procedural scenes; print errors, speed and a panel."""
    import vbkernels
    from vbkernels.palettes import load_palette
    from vbkernels.scenes import degrade, make_scenes

    from .decode import resolve_device

    torch_device = resolve_device(device)
    if h264 is None:
        h264 = _have_pyav()
    elif h264 and not _have_pyav():
        raise click.UsageError("--h264 needs PyAV: pip install av")
    palette = load_palette("cityscapes")
    truth = make_scenes(count, height, width, seed=seed, device=torch_device)
    encoded = {
        "depth": vbkernels.encode_depth(truth["depth"]),
        "normals": vbkernels.encode_normals(truth["normals"]),
        "seg": vbkernels.encode_segmentation(truth["semantic"], palette),
    }
    degraded = {name: degrade(rgb, jpeg_quality=jpeg_quality, blur_sigma=blur_sigma, h264=h264)
                for name, rgb in encoded.items()}
    codec = f"blur {blur_sigma:g} px, JPEG {jpeg_quality}" + (", H.264 crf 23" if h264 else "")
    click.echo(f"{count} scenes of {height}x{width} on {torch_device} "
               f"(backends here: {', '.join(vbkernels.available_backends())}; using {backend!r})")

    decode = _decoders(vbkernels, palette, backend)
    rows = []
    for label, images in (("lossless (PNG)", encoded), (f"degraded ({codec})", degraded)):
        decoded, seconds = _decode_all(decode, images, repeats)
        rows.append((label, _scores(decoded, truth), seconds))
    # ``decoded`` now holds the degraded inputs' outputs, which the panel shows.
    _print_scores(rows, count, height, width, repeats)
    if no_panel:
        return
    shown = min(count, PANEL_MAX_SCENES)
    try:
        png = _panel_png(inputs=degraded, decoded=decoded, truth=truth, palette=palette,
                         scenes=shown, total=count)
    except ImportError:
        click.echo("panel skipped: it needs matplotlib (pip install matplotlib)", err=True)
        return
    from .io import write_atomic

    if panel_path.is_dir() or not panel_path.suffix:  # a folder (created when missing)
        panel_path = panel_path / DEFAULT_PANEL
    write_atomic(panel_path, png, overwrite=True)
    click.echo(f"panel of {_scenes_shown(shown, count)} written to {panel_path.resolve()}")


def _scenes_shown(shown: int, count: int) -> str:
    if shown == count:
        return f"{count} scene{'s' if count > 1 else ''}"
    return f"the first {shown} of {count} scenes"


def _have_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _decoders(vbkernels, palette, backend):
    def seg(rgb):
        return vbkernels.decode_segmentation(rgb, palette, backend=backend)

    return {
        "depth": lambda rgb: vbkernels.decode_depth(rgb, backend=backend),
        "normals": lambda rgb: vbkernels.decode_normals(rgb, backend=backend),
        "seg": seg,
    }


def _decode_all(decode, images, repeats: int = DEFAULT_REPEATS):
    """Decode each kind once to warm up, then time ``repeats`` calls: the outputs and the
    median seconds per kind."""
    decoded, seconds = {}, {}
    for name, rgb in images.items():
        decode[name](rgb)
        _sync(rgb.device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            decoded[name] = decode[name](rgb)
            _sync(rgb.device)
            times.append(time.perf_counter() - start)
        seconds[name] = statistics.median(times)
    return decoded, seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _scores(decoded, truth) -> dict:
    from vbkernels.metrics import depth_metrics, normal_metrics, segmentation_metrics

    depth = depth_metrics(decoded["depth"], truth["depth"], max_depth=EVAL_MAX_DEPTH)
    normals = normal_metrics(decoded["normals"], truth["normals"])
    seg = segmentation_metrics(decoded["seg"], truth["semantic"], 19)
    return {
        "delta1": depth["delta1"], "abs_rel": depth["abs_rel"],
        "angle": normals["mean"], "within_11": normals["within_11.25"],
        "miou": seg["miou"], "pixel_acc": seg["pixel_accuracy"],
    }


def _print_scores(rows, count, height, width, repeats: int = DEFAULT_REPEATS) -> None:
    click.echo(f"\n{'':<44} {'delta1':>7} {'AbsRel':>8} {'mean ang':>9} {'<11.25':>7} "
               f"{'mIoU':>6} {'pix acc':>8}")
    for label, s, _ in rows:
        click.echo(f"{label:<44} {s['delta1']:>7.4f} {s['abs_rel']:>8.5f} "
                   f"{s['angle']:>8.3f}° {s['within_11']:>6.1f}% {s['miou']:>6.3f} "
                   f"{s['pixel_acc']:>8.4f}")
    click.echo(f"(depth scored on pixels closer than {EVAL_MAX_DEPTH:g} m)\n")
    click.echo(f"speed: median of {repeats} timed call{'s' if repeats > 1 else ''} per task "
               f"after a warm-up, {count} frames a call")
    megapixels = count * height * width / 1e6
    for name, seconds in rows[-1][2].items():
        rate = count / seconds if seconds > 0 else float("inf")
        click.echo(f"decode {name:<8} {seconds * 1e3:8.2f} ms  {rate:9.1f} frames/s  "
                   f"{megapixels / seconds if seconds > 0 else float('inf'):8.1f} Mpx/s")


def _panel_png(*, inputs, decoded, truth, palette, scenes: int, total: int) -> bytes:
    """Rows = the first ``scenes`` of ``total`` scenes; columns = each task's degraded
    input, decoded output, error map."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    import vbkernels

    depth_true = truth["depth"][:scenes].cpu()
    depth_pred = decoded["depth"][:scenes].cpu()
    rel_error = ((depth_pred - depth_true).abs() / depth_true).clamp(max=1.0)
    rel_error[depth_true > EVAL_MAX_DEPTH] = float("nan")
    normals_pred = decoded["normals"][:scenes].cpu()
    cos = (normals_pred * truth["normals"][:scenes].cpu()).sum(-1).clamp(-1, 1)
    angle = torch.rad2deg(torch.acos(cos))
    seg_pred = decoded["seg"][:scenes].cpu()
    seg_true = truth["semantic"][:scenes].cpu()
    seg_colours = vbkernels.encode_segmentation(seg_pred, palette)
    columns = [
        ("depth input", lambda i: (inputs["depth"][i].cpu().numpy(), {})),
        ("decoded depth (m)", lambda i: (depth_pred[i].numpy(),
                                         {"cmap": "turbo", "vmin": 0, "vmax": EVAL_MAX_DEPTH})),
        ("depth rel. error", lambda i: (rel_error[i].numpy(),
                                        {"cmap": "magma", "vmin": 0, "vmax": 0.05})),
        ("normals input", lambda i: (inputs["normals"][i].cpu().numpy(), {})),
        ("decoded normals", lambda i: (vbkernels.encode_normals(normals_pred[i]).numpy(), {})),
        ("angular error (°)", lambda i: (angle[i].numpy(),
                                         {"cmap": "magma", "vmin": 0, "vmax": 10})),
        ("seg input", lambda i: (inputs["seg"][i].cpu().numpy(), {})),
        ("decoded seg", lambda i: (seg_colours[i].numpy(), {})),
        ("seg errors", lambda i: ((seg_pred[i] != seg_true[i]).numpy(),
                                  {"cmap": "gray", "vmin": 0, "vmax": 1})),
    ]
    height, width = depth_true.shape[1:]
    cell = 2.2
    figure = Figure(figsize=(cell * len(columns), cell * height / width * scenes + 0.4), dpi=100)
    FigureCanvasAgg(figure)
    for row in range(scenes):
        for col, (title, image_of) in enumerate(columns):
            axes = figure.add_subplot(scenes, len(columns), row * len(columns) + col + 1)
            image, style = image_of(row)
            shown = axes.imshow(image, interpolation="nearest", **style)
            axes.set_axis_off()
            if row == 0:
                axes.set_title(title, fontsize=8)
            if style.get("cmap") not in (None, "gray") and row == scenes - 1:
                figure.colorbar(shown, ax=axes, orientation="horizontal", fraction=0.06,
                                pad=0.02).ax.tick_params(labelsize=6)
    figure.suptitle(f"vbkernels demo: {_scenes_shown(scenes, total)} (rows), "
                    "degraded input -> decoded -> error", fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()
