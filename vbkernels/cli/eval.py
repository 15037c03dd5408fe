"""``vbkernels eval depth|normals|seg PRED... --dataset PRESET --gt-root DIR -o OUT`` and
``vbkernels eval suite FILE.toml``: thin click wrappers over :mod:`vbkernels.eval`.

Writes ``OUT/metrics.json``, ``metrics.md``, ``per_image.csv`` and ``plots/``. Exit status
0 when every expected sample was scored; 1 when any prediction is missing (unless
``--allow-missing``) or failed to read or decode (the rest are still scored and written);
a bad option, preset or ground-truth file is an error message naming it, with no output.
"""

from __future__ import annotations

import click

from vbkernels._dispatch import BACKEND_NAMES


def _choices(values):
    return click.Choice(list(values))


def eval_options(func):
    from vbkernels.eval import protocols
    from vbkernels.eval.pairing import MATCHES, PRED_FORMATS

    options = [
        click.argument("predictions", nargs=-1, required=True),
        click.option("--dataset", required=True, metavar="PRESET",
                     help="nyuv2, kitti-eigen, scannet, eth3d, diode, ibims, nyuv2-normals, "
                          "scannet-normals, cityscapes, ade20k, or folder."),
        click.option("--gt-root", required=True, type=click.Path(file_okay=False),
                     help="The dataset's root, in the preset's native layout."),
        click.option("-o", "--output", "outdir", required=True,
                     type=click.Path(file_okay=False), help="Directory for the results."),
        click.option("--split", type=click.Path(dir_okay=False), default=None,
                     help="filename_list_*.txt: per line RGB path, GT path, extras "
                          "(relative to --gt-root) [default: every GT file]."),
        click.option("--match", type=_choices(MATCHES), default=None,
                     help="Pair by relative path (default), file stem, or order."),
        click.option("--allow-missing", is_flag=True,
                     help="Exit 0 even when some samples have no prediction."),
        click.option("--protocol", type=_choices(protocols.PROTOCOLS), default=None,
                     help="Whose evaluation code to follow [default: zoedepth, dsine, "
                          "mmseg; cityscapes for the cityscapes preset]."),
        click.option("--align", type=_choices(protocols.ALIGNMENTS), default=None),
        click.option("--crop", type=_choices(protocols.CROPS), default=None),
        click.option("--min-depth", type=float, default=None),
        click.option("--max-depth", type=float, default=None),
        click.option("--range", "range_", type=_choices(protocols.RANGES), default=None),
        click.option("--clamp", type=_choices(protocols.CLAMPS), default=None),
        click.option("--reduction", type=_choices(protocols.REDUCTIONS), default=None),
        click.option("--min-valid-pixels", type=click.IntRange(min=1), default=None),
        click.option("--resize", type=_choices(protocols.RESIZES), default=None),
        click.option("--fit", type=_choices(protocols.FITS), default=None,
                     help="How the generated frame maps onto the ground truth when sizes "
                          "differ [default: none = sizes must match]."),
        click.option("--pred-format", type=_choices(PRED_FORMATS), default="image",
                     show_default=True, help="image (decode RGB), npy or png16 arrays."),
        click.option("--decoder", default=None, metavar="colormap:NAME",
                     help="Depth painted with a colormap instead of the walk."),
        click.option("--vmin", type=float, default=None),
        click.option("--vmax", type=float, default=None),
        click.option("--png-scale", type=float, default=1000.0, show_default=True,
                     help="--pred-format png16: metres = value / scale."),
        click.option("--palette", default=None, help="seg: palette name or file."),
        click.option("--max-distance", type=float, default=None,
                     help="seg: reject colours farther than this from every class."),
        click.option("--pred-frame", type=_choices(protocols.FRAMES), default=None,
                     help="normals: the predictions' frame [default: opengl]."),
        click.option("--gt-suffix", default=".png", show_default=True,
                     help="--dataset folder: ground-truth file suffix."),
        click.option("--gt-scale", type=float, default=1000.0, show_default=True,
                     help="--dataset folder: 16-bit depth PNG units per metre."),
        click.option("--mask-suffix", default=None, help="--dataset folder: mask files."),
        click.option("--num-classes", type=click.IntRange(min=1), default=None,
                     help="--dataset folder, seg: the number of classes."),
        click.option("--gt-frame", type=_choices(protocols.FRAMES), default="opengl",
                     help="--dataset folder, normals: the ground truth's frame."),
        click.option("--backend", default="auto", show_default=True,
                     type=click.Choice(["auto", *BACKEND_NAMES])),
        click.option("--device", default="auto", show_default=True),
        click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1)),
        click.option("--workers", default=None, type=click.IntRange(min=0),
                     help="Reading processes [default: one per core; 0 = none]."),
        click.option("--worst", "worst_k", default=4, show_default=True,
                     type=click.IntRange(min=0), help="Images in plots/worst.png."),
        click.option("--no-plots", is_flag=True, help="Skip plots/."),
        click.option("--quiet", is_flag=True, help="No progress bar or summary."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group("eval")
def eval_group():
    """Score generated depth, normals or segmentation against a benchmark's ground truth."""


def _run(task: str, options: dict) -> int:
    from vbkernels.eval import DatasetError, EvalError, evaluate, folder_preset, write_outputs

    o = options
    dataset = o["dataset"]
    try:
        if dataset == "folder":
            dataset = folder_preset(task, gt_suffix=o["gt_suffix"], scale=o["gt_scale"],
                                    mask_suffix=o["mask_suffix"],
                                    num_classes=o["num_classes"], palette=o["palette"],
                                    frame=o["gt_frame"])
        overrides = {"align": o["align"], "crop": o["crop"], "min_depth": o["min_depth"],
                     "max_depth": o["max_depth"], "range": o["range_"], "clamp": o["clamp"],
                     "reduction": o["reduction"], "min_valid_pixels": o["min_valid_pixels"],
                     "resize": o["resize"], "fit": o["fit"]}
        bar = None

        stderr = click.get_text_stream("stderr")

        def progress(done, total):
            nonlocal bar
            if o["quiet"] or not stderr.isatty():  # no bar in logs and pipes
                return
            if bar is None:
                bar = click.progressbar(length=total, label="images scored", file=stderr)
                bar.__enter__()
            bar.update(done - bar.pos)

        try:
            result = evaluate(
                task, list(o["predictions"]), dataset=dataset, gt_root=o["gt_root"],
                split=o["split"], match=o["match"], protocol=o["protocol"],
                overrides=overrides, device=o["device"], backend=o["backend"],
                batch_size=o["batch_size"], workers=o["workers"],
                pred_format=o["pred_format"], decoder=o["decoder"], palette=o["palette"],
                max_distance=o["max_distance"], vmin=o["vmin"], vmax=o["vmax"],
                png_scale=o["png_scale"], pred_frame=o["pred_frame"], worst_k=o["worst_k"],
                progress=progress)
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
        write_outputs(result, o["outdir"], plots=not o["no_plots"])
    except (DatasetError, EvalError, ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from None
    return _report(result, o)


def _report(result, o) -> int:
    count = result.count
    if not o["quiet"]:
        for sample in result.missing[:10]:
            click.echo(f"missing: {sample}", err=True)
        if len(result.missing) > 10:
            click.echo(f"missing: ... and {len(result.missing) - 10} more (metrics.json)",
                       err=True)
        for name, message in result.errors:
            click.echo(f"error: {name}: {message}", err=True)
        click.echo((open(f"{o['outdir']}/metrics.md").read()).rstrip())
    failed = count["failed"] or (count["missing"] and not o["allow_missing"])
    return 1 if failed else 0


_TASK_HELP = {"depth": "depth (walk-painted RGB, or --pred-format npy/png16, or "
                      "--decoder colormap:NAME)",
              "normals": "normals (RGB-painted, or --pred-format npy)",
              "seg": "segmentation (palette-painted, or --pred-format npy label maps)"}


def _command(task: str):
    @eval_group.command(task, help=(
        f"Score {_TASK_HELP[task]} predictions PRED... (folders, files, globs) against "
        "--dataset's ground truth under --gt-root; writes metrics.json, metrics.md, "
        "per_image.csv and plots/ to -o OUT."),
        short_help=f"Score {task} predictions against a benchmark.")
    @eval_options
    def command(**options):
        raise SystemExit(_run(task, options))

    return command


depth = _command("depth")
normals = _command("normals")
seg = _command("seg")


@eval_group.command("suite")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False))
@click.option("--device", default="auto", show_default=True)
@click.option("--quiet", is_flag=True)
def suite(config, outdir, device, quiet):
    """Run every [[run]] of a TOML file and add the N-dataset average rows."""
    from vbkernels.eval import suite as suite_module

    try:
        summary = suite_module.run_suite(config, outdir, device=device)
    except (suite_module.SuiteError, ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from None
    if not quiet:
        click.echo(summary.markdown.rstrip())
    raise SystemExit(1 if summary.failed else 0)
