"""``vbkernels robustness``: what PNG, JPEG, WebP and H.264 do to decoded outputs.

Thin command over :func:`vbkernels.robustness.robustness_report`: it prints the table and
writes ``robustness.md``, ``robustness.json`` and ``robustness.png`` into ``-o/--output``
(``--output-dir``, its old name, still works).
"""

from __future__ import annotations

import click
import numpy as np

from vbkernels._dispatch import BACKEND_NAMES
from vbkernels.robustness import CODEC_NAMES, format_markdown, robustness_report, write_report


@click.command("robustness")
@click.option("-n", "--count", default=6, show_default=True, type=click.IntRange(min=1),
              help="Procedural scenes to encode (ignored with user images).")
@click.option("--height", default=120, show_default=True, type=click.IntRange(min=8))
@click.option("--width", default=160, show_default=True, type=click.IntRange(min=8))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--depth", "depth_paths", multiple=True, metavar="PATH",
              help="Your encoded depth images (files, folders, globs; one size). Repeatable.")
@click.option("--normals", "normals_paths", multiple=True, metavar="PATH",
              help="Your encoded normal images.")
@click.option("--seg", "seg_paths", multiple=True, metavar="PATH",
              help="Your encoded segmentation images.")
@click.option("--palette", default="cityscapes", show_default=True,
              help="Segmentation palette: cityscapes, ade20k, voc or a .csv/.json file.")
@click.option("--codec", "codecs", multiple=True, type=click.Choice(CODEC_NAMES),
              help="Codec rows to run (repeatable; default all).")
@click.option("--max-distance", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Segmentation rejection radius in 0..255 units "
                   "[default: half the smallest palette gap].")
@click.option("--device", default="auto", show_default=True,
              help="auto (cuda if present), cpu, cuda, cuda:1 ...")
@click.option("--backend", default="auto", show_default=True,
              type=click.Choice(["auto", *BACKEND_NAMES]), help="Kernel backend.")
@click.option("-o", "--output", "output_dir", default="robustness_report", show_default=True,
              type=click.Path(file_okay=False), help="Folder for robustness.md/.json/.png.")
@click.option("--output-dir", "output_dir_alias", default=None, hidden=True,
              type=click.Path(file_okay=False), help="Old name of -o/--output.")
@click.option("--no-plot", is_flag=True, help="Skip the PNG chart.")
def robustness(count, height, width, seed, depth_paths, normals_paths, seg_paths, palette, codecs,
               max_distance, device, backend, output_dir, output_dir_alias, no_plot):
    """Encode, pass through lossy codecs, decode and score depth, normals and segmentation."""
    import torch

    output_dir = output_dir_alias or output_dir

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    paths = {"depth": depth_paths, "normals": normals_paths, "seg": seg_paths}
    images = {task: _load_images(given, f"--{task}")
              for task, given in paths.items() if given} or None
    try:
        report = robustness_report(
            scenes=count, height=height, width=width, seed=seed, images=images, palette=palette,
            codecs=list(codecs) or None, max_distance=max_distance, device=device, backend=backend,
            log=lambda line: click.echo(line, err=True),
        )
    except (ValueError, TypeError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_markdown(report))
    plot = not no_plot and _have_matplotlib()
    if not no_plot and not plot:
        click.echo("plot skipped: it needs matplotlib (pip install matplotlib)", err=True)
    for path in write_report(report, output_dir, plot=plot):
        click.echo(f"wrote {path}", err=True)


def _load_images(given, option: str) -> np.ndarray:
    """The images behind ``given`` stacked as (N, H, W, 3) uint8; all must share one size."""
    from vbkernels.pipeline import expand_inputs, read_image

    sources, errors = expand_inputs(given)
    if errors:
        raise click.BadParameter("; ".join(f"{item}: {why}" for item, why in errors),
                                 param_hint=option)
    videos = [str(s.path) for s in sources if s.kind != "image"]
    if videos:
        raise click.BadParameter(f"takes images, not videos: {', '.join(videos)}",
                                 param_hint=option)
    frames = []
    for source in sources:
        try:
            frames.append(read_image(source.path))
        except ValueError as exc:
            raise click.BadParameter(f"{source.path}: {exc}", param_hint=option) from None
    sizes = sorted({frame.shape for frame in frames})
    if len(sizes) > 1:
        raise click.BadParameter(f"images must share one size, got {sizes}", param_hint=option)
    return np.stack(frames)


def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True
