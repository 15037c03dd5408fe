"""``vbkernels decode depth|normals|seg|instances|colormap``: images and videos in, arrays
out.

Thin click wrappers over :mod:`vbkernels.pipeline` (``build_task`` + the local engine).
Per input frame, written next to each other under OUTDIR (a video ``clip.mp4`` gets a
folder ``clip/`` with one set per frame, ``000000.depth.npy`` ...):

========== ============================== ============================================
task       npy, png (the default)         preview (--preview or --outputs ...,preview)
========== ============================== ============================================
depth      NAME.depth.npy  float32 metres NAME.depth.preview.png (colormap + colourbar)
           NAME.depth.png  uint16, 16-bit depth PNG (see below)
           NAME.ply        with --ply: binary PLY point cloud, coloured by the input
normals    NAME.normals.npy float32 (H,W,3) NAME.normals.preview.png (normals as RGB)
seg        NAME.seg.npy    uint8/int32    NAME.seg.preview.png (palette colours + legend)
           NAME.seg.png    label PNG: 8-bit when the palette's labels fit, else 16-bit
instances  NAME.instances.npy int32       NAME.instances.preview.png (fixed colours, edges)
           NAME.instances.png uint16 (-1 'near no colour' written as 65535)
colormap   NAME.colormap.npy float32      NAME.colormap.preview.png (values repainted with
           NAME.colormap.distance.npy     the colormap + a colour bar of values)
           float32 (``--outputs npy,distance``): distance to the colormap, 0..255 units
========== ============================== ============================================

``--outputs ...,distance`` also writes ``NAME.depth|normals|seg.distance.npy``: each pixel's
distance from the encoding (the walk, the unit-normal sphere, the nearest palette colour),
and an input whose median distance is past a threshold gets one ``warning:`` line
(docs/format.md, Checking inputs). Videos: ``--frames START:STOP:STEP`` picks frames,
``--stack`` adds ``clip.<task>.npy`` (T, H, W[, 3]) and ``--contact-sheet``
``clip.<task>.contact.png`` (``vbkernels.pipeline.clips``).

16-bit depth PNG: ``value = round(depth_m * png_scale)`` with ``png_scale = 1000``
(millimetres, the NYUv2/ScanNet convention) by default; ``--png-scale 256`` gives the KITTI
depth benchmark's encoding (``depth_m = value / 256``). 0 means invalid: NaN, +inf (white)
and depths that do not fit in 16 bits (above 65.535 m in millimetres) are written as 0.

Point clouds (``--ply``, or ``ply`` in ``--outputs``) back-project the depth with
``--intrinsics fx,fy,cx,cy`` in pixels (OpenCV's convention: pixel (u, v) is at integer
coordinates, so the image centre is ((W-1)/2, (H-1)/2)) or ``--fov DEGREES``, an assumed
pinhole camera with that horizontal field of view, ``fx = fy = W / (2 tan(fov/2))`` and the
principal point at the image centre. Points are in OpenCV camera axes (+x right, +y down,
+z forward), metres; invalid depth (NaN, +inf) is left out (docs/format.md, Points).

Reruns resume: an input whose outputs all exist is skipped (``OUT/manifest.jsonl`` records
every input's outcome, with the run's id, time, engine and backend); one with only some
outputs is redone; ``--overwrite`` redoes everything and removes this task's outputs of
kinds not asked for (an old preview). Each run leaves ``OUT/runs/<run>.json`` and
``OUT/summary.json`` (counts, seconds, frames/s, settings). ``--dry-run`` prints the plan
(``decode``/``skip``/``fail`` lines) and writes nothing. ``-o`` is a local directory (or a
``file://`` URI) or an object store (``s3://bucket/prefix``, see ``vbkernels.storage``);
``--format webdataset|parquet`` writes shards with commit records instead of files.
Exit status: 0 when every input is done or skipped, 1 when any failed (or, with
``--dry-run``, would fail), 130 after Ctrl-C, 143 after SIGTERM (either stops as Ctrl-C
does: the files in flight finish, then the summary; see the README's Reliability notes).
"""

from __future__ import annotations

import click

from vbkernels._dispatch import BACKEND_NAMES
from vbkernels.colormap import SCALES
from vbkernels.pipeline import (
    DecodeFailed,
    PipelineOptions,
    RunSummary,
    build_task,
    expand_inputs,
    resolve_device,
)
from vbkernels.pipeline.local import make_pipeline
from vbkernels.pipeline.outputs import check_output

BACKEND_CHOICE = click.Choice(["auto", *BACKEND_NAMES])
_LISTED = 10  # inputs named in the Ctrl-C summary


class _MaxPixels(click.ParamType):
    """``pillow``, ``none`` or a whole number >= 1."""

    name = "N|none"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        if value.strip().lower() in ("pillow", "none"):
            return None if value.strip().lower() == "none" else "pillow"
        try:
            number = int(value.replace("_", ""))
        except ValueError:
            number = 0
        if number < 1:
            self.fail(f"expected a whole number >= 1, pillow or none; got {value!r}", param,
                      ctx)
        return number


def common_options(func):
    """Options every decode subcommand shares (applied bottom-up, shown top-down)."""
    options = [
        click.argument("inputs", nargs=-1, required=True),
        click.option("-o", "--output", "outdir", required=True,
                     help="Directory for the outputs (created when missing), or an object "
                          "store URI (s3://bucket/prefix, gs://..., anything fsspec opens)."),
        click.option("--format", "output_format", default="files", show_default=True,
                     type=click.Choice(["files", "webdataset", "parquet"]),
                     help="files: one file per output per frame; webdataset: tar shards; "
                          "parquet: Parquet shards (both with commit records shards/*.json)."),
        click.option("--shard-size", default="512MB", show_default=True, metavar="SIZE",
                     help="Input bytes per shard for --format webdataset|parquet."),
        click.option("--dtype", default="float32", show_default=True,
                     type=click.Choice(["float32", "float16"]),
                     help="Float type of depth and normals arrays (float16: half the bytes)."),
        click.option("--storage-option", "storage_options", multiple=True, metavar="KEY=VALUE",
                     help="Object-store client option, repeatable (s3: endpoint_url, "
                          "region_name, ...); credentials come from the usual environment."),
        click.option("--backend", default="auto", show_default=True, type=BACKEND_CHOICE,
                     help="Kernel backend (auto picks the fastest for the device)."),
        click.option("--device", default="auto", show_default=True,
                     help="auto (CUDA when available), cpu, cuda or cuda:N."),
        click.option("--batch-size", default=16, show_default=True,
                     type=click.IntRange(min=1), help="Frames decoded per call."),
        click.option("--workers", default=None, type=click.IntRange(min=0),
                     help="Processes that read and write files [default: one per core; "
                          "0 = all in this process]."),
        click.option("--outputs", "kinds", default=None, metavar="KINDS",
                     help="Comma list of npy, png (alias png16), preview, distance (each "
                          "pixel's distance to the encoding, NAME.<task>.distance.npy); "
                          "colormap: npy, distance, preview [default: npy,png; normals, "
                          "colormap: npy]."),
        click.option("--preview", is_flag=True, help="Also write colourised preview PNGs."),
        click.option("--frames", "frame_choice", default=None, metavar="START:STOP:STEP",
                     help="Videos: decode only these frames (a Python slice, STOP exclusive; "
                          "outputs keep the video's frame numbers) [local engine]."),
        click.option("--stack", is_flag=True,
                     help="Videos: also write OUT/clip.<task>.npy, every frame's array in one "
                          "(T, H, W[, 3]) file (and one per other .npy output)."),
        click.option("--contact-sheet", is_flag=True,
                     help="Videos: also write OUT/clip.<task>.contact.png, up to 16 frames' "
                          "previews in a grid (implies --preview)."),
        click.option("--keep-suffix", is_flag=True,
                     help="Keep the input's suffix in output names (a.png.depth.npy), so "
                          "a.png and a.jpg do not collide."),
        click.option("--overwrite", is_flag=True,
                     help="Redo inputs whose outputs exist (default: skip them)."),
        click.option("--no-gpu-input", is_flag=True,
                     help="On CUDA, read JPEGs and videos on the CPU even when nvJPEG "
                          "(torchvision) or NVDEC (torchcodec) is installed."),
        click.option("--max-pixels", default="pillow", show_default=True, metavar="N|none",
                     type=_MaxPixels(),
                     help="Refuse (fail) images with more pixels: pillow = Pillow's "
                          "decompression-bomb limit (178956970 unless PIL.Image."
                          "MAX_IMAGE_PIXELS is changed), a number, or none."),
        click.option("--quiet", is_flag=True, help="No progress bar or summary."),
        click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
                     show_default=True,
                     help="local: this machine's pipeline; ray: a Ray cluster's actors "
                          "(pip install 'vbkernels[ray]'), same files and names."),
        click.option("--ray-address", default=None, metavar="ADDRESS",
                     help="With --engine ray: the cluster's HOST:PORT (auto = the one running "
                          "on this node) [default: RAY_ADDRESS, else a local Ray on "
                          "127.0.0.1]."),
        click.option("--dry-run", is_flag=True,
                     help="Print which inputs would be decoded, skipped (outputs exist) or "
                          "fail, and write nothing."),
        click.option("--verbose", is_flag=True,
                     help="With --engine ray: Ray's INFO logging and the actors' output "
                          "(default: warnings only)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group("decode")
def decode():
    """Decode generated images and videos into depth, normals, labels or colormap values.

    INPUT may be image files (PNG, JPEG, WebP), videos (MP4, MKV, WebM), directories
    (searched recursively) or glob patterns. Files are read and written by worker
    processes while batches decode on the device; a rerun skips inputs already done.
    """


class _Numbers(click.ParamType):
    """A comma-separated list of ``count`` numbers."""

    name = "NUMBERS"

    def __init__(self, count: int):
        self.count = count

    def convert(self, value, param, ctx):
        if isinstance(value, tuple) or value is None:
            return value
        try:
            numbers = tuple(float(v) for v in value.split(","))
        except ValueError:
            numbers = ()
        if len(numbers) != self.count:
            self.fail(f"expected {self.count} comma-separated numbers, got {value!r}",
                      param, ctx)
        return numbers


_PLY_OPTIONS = ("intrinsics", "fov", "ply_max_depth", "ply_max_distance", "ply_stride",
                "ply_voxel")


def _point_cloud_options(func):
    """--ply and its camera and thinning options (decode depth and decode colormap)."""
    options = [
        click.option("--ply", is_flag=True,
                     help="Also write NAME.ply, the decoded depth as a point cloud coloured "
                          "by the input (needs --intrinsics or --fov)."),
        click.option("--intrinsics", default=None, metavar="FX,FY,CX,CY", type=_Numbers(4),
                     help="Camera of the point cloud, in pixels (pixel centres at integers)."),
        click.option("--fov", default=None, type=float, metavar="DEGREES",
                     help="Camera of the point cloud: a pinhole with this horizontal field of "
                          "view, centred on the image."),
        click.option("--ply-max-depth", default=None, type=float, metavar="DEPTH",
                     help="Leave out points whose depth is beyond this (the sky)."),
        click.option("--ply-max-distance", default=None, type=float, metavar="UNITS",
                     help="Leave out points whose colour is farther than this (0..255 units) "
                          "from the encoding (the walk, or the colormap)."),
        click.option("--ply-stride", default=1, show_default=True, type=click.IntRange(min=1),
                     metavar="N", help="Keep every Nth row and column of points."),
        click.option("--ply-voxel", default=None, type=float, metavar="SIZE",
                     help="One point per voxel of this size (the mean of its points and "
                          "colours), as Open3D's voxel_down_sample."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _ply_choice(task_name: str, common: dict) -> dict:
    """Pop the point-cloud options from ``common``; add the ply output kind for --ply."""
    from vbkernels.pipeline.tasks import TASKS

    ply = common.pop("ply")
    options = {key: common.pop(key) for key in _PLY_OPTIONS}
    if ply:
        kinds = common["kinds"] or ",".join(TASKS[task_name].default_kinds)
        common["kinds"] = kinds + ",ply"
    thinning = [f"--{key.replace('_', '-')}" for key in _PLY_OPTIONS[2:]
                if options[key] not in (None, 1)]
    if thinning and not ply and "ply" not in (common["kinds"] or ""):
        raise click.UsageError(f"{', '.join(thinning)} shape the point cloud: add --ply")
    return options


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
@click.option("--vmin", default=None, type=float,
              help="Preview colour scale start in metres (default: per frame).")
@click.option("--vmax", default=None, type=float,
              help="Preview colour scale end in metres; fix both so a video's previews "
                   "share one scale.")
@_point_cloud_options
def depth_command(lam, c, max_depth, png_scale, vmin, vmax, **common):
    """Metric depth (metres) from cube-walk RGB."""
    ply = _ply_choice("depth", common)
    _run("depth", common, lam=lam, c=c, max_depth=max_depth, png_scale=png_scale, vmin=vmin,
         vmax=vmax, **ply)


@decode.command("normals")
@common_options
@click.option("--convention", type=click.Choice(["opengl", "opencv"]), default="opengl",
              show_default=True, help="Camera frame of the output vectors.")
def normals_command(convention, **common):
    """Unit surface normals (H, W, 3) from RGB."""
    _run("normals", common, convention=convention)


@decode.command("seg")
@common_options
@click.option("--palette", default="cityscapes", show_default=True,
              help="cityscapes, ade20k, voc, or a palette file (.csv name,r,g,b or .json).")
@click.option("--max-distance", default=None, type=float,
              help="Pixels farther than this (0..255 units) from every palette colour get "
                   "the palette's ignore index.")
def seg_command(palette, max_distance, **common):
    """Semantic labels by nearest palette colour (label PNG: 8-bit when the palette's
    labels and ignore index fit in 0..255, else 16-bit)."""
    _run("seg", common, palette=palette, max_distance=max_distance)


@decode.command("colormap")
@common_options
@click.option("--colormap", required=True, metavar="NAME|FILE",
              help="The colormap the images were painted with: a built-in (viridis, plasma, "
                   "inferno, magma, cividis, turbo, gray, Greys, jet, rainbow, Spectral, each "
                   "also _r), another matplotlib name, or a .csv (r,g,b lines) or .npy file of "
                   "colours.")
@click.option("--vmin", default=0.0, show_default=True, type=float,
              help="Value at the start of the colormap.")
@click.option("--vmax", default=1.0, show_default=True, type=float,
              help="Value at the end of the colormap.")
@click.option("--scale", type=click.Choice(SCALES), default="linear", show_default=True,
              help="How values were spread over the map: linear, log (0 < vmin), or inverse "
                   "(painted in 1/value, as disparity; vmin at the top of the map).")
@click.option("--max-distance", default=None, type=float,
              help="Pixels farther than this (0..255 units) from the colormap get NaN.")
@_point_cloud_options
def colormap_command(colormap, vmin, vmax, scale, max_distance, **common):
    """Values (e.g. depth) from images painted with a colormap, as plt.imsave(..., cmap=)
    writes them; --outputs npy,distance adds each pixel's distance to the colormap, --ply
    the values as depth of a point cloud."""
    ply = _ply_choice("colormap", common)
    _run("colormap", common, colormap=colormap, vmin=vmin, vmax=vmax, scale=scale,
         max_distance=max_distance, **ply)


class _Background(click.ParamType):
    name = "R,G,B|none"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple) or value is None:
            return value
        if value.strip().lower() == "none":
            return None
        try:
            rgb = tuple(float(v) for v in value.split(","))
        except ValueError:
            rgb = ()
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            self.fail(f"expected three values in 0..255 like 0,0,0, or none; got {value!r}",
                      param, ctx)
        return rgb


@decode.command("instances")
@common_options
@click.option("--max-distance", default=40.0, show_default=True, type=float,
              help="Pixels farther than this from every found colour get -1.")
@click.option("--min-pixels", default=64, show_default=True, type=click.IntRange(min=1),
              help="Smallest instance, in pixels.")
@click.option("--background", default="0,0,0", show_default=True, type=_Background(),
              help="Colour labelled 0 (never an instance); none makes every colour an "
                   "instance.")
@click.option("--merge-distance", default=None, type=float,
              help="Colours closer than this are one instance [default: max-distance / 2].")
@click.option("--split-components", is_flag=True,
              help="Give each 8-connected region of one colour its own id (needs SciPy).")
def instances_command(max_distance, min_pixels, background, merge_distance,
                      split_components, **common):
    """Instance masks: each image's own colours found by clustering (0 = background)."""
    _run("instances", common, max_distance=max_distance, min_pixels=min_pixels,
         background=background, merge_distance=merge_distance,
         split_components=split_components)


# ----------------------------------------------------------------------------- the run


def _run(name: str, common: dict, **task_options) -> None:
    """Build the task and the pipeline from the options, run it, report, exit (130 for a
    Ctrl-C that comes before or after the run itself, never click's "Aborted!")."""
    try:
        _run_local_or_ray(name, common, **task_options)
    except KeyboardInterrupt:
        _ignore_further_interrupts()
        click.echo("\ninterrupted before any file was decoded", err=True)
        raise SystemExit(130) from None


def _ignore_further_interrupts() -> None:
    """The run has stopped and the command is on its way out with 130: another Ctrl-C
    from here on would only break the exit itself (a KeyboardInterrupt traceback from
    an exit handler), so it is ignored."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_local_or_ray(name: str, common: dict, **task_options) -> None:
    from pathlib import Path

    from tqdm import tqdm

    if common["dtype"] != "float32":
        task_options["dtype"] = common["dtype"]
    try:
        outdir = check_output(common["outdir"])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'-o' / '--output'") from None
    try:
        task = build_task(name, backend=common["backend"], **task_options)
    except (ValueError, TypeError) as exc:
        raise click.UsageError(str(exc)) from None
    kinds = _kinds(task, common["kinds"], common["preview"] or common["contact_sheet"])
    frames = _frame_choice(common)
    common["storage"] = _storage_options(common)
    if common["engine"] == "ray":
        return _run_ray(task, kinds, outdir, common)
    try:
        device = resolve_device(common["device"])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None
    options = PipelineOptions(kinds=kinds, device=device, batch_size=common["batch_size"],
                              workers=common["workers"], overwrite=common["overwrite"],
                              keep_suffix=common["keep_suffix"],
                              gpu_input=not common["no_gpu_input"],
                              max_pixels=common["max_pixels"], dry_run=common["dry_run"],
                              format=common["output_format"], shard_size=common["shard_size"],
                              storage_options=common["storage"], frames=frames)
    if isinstance(outdir, Path) and not common["dry_run"]:
        _check_outdir(outdir)
    sources, input_errors = expand_inputs(common["inputs"])
    try:
        pipeline = make_pipeline(task, outdir, options,
                                 on_error=None if common["dry_run"] else _echo_error,
                                 on_warning=_echo_warning)
        pipeline.plan(sources, input_errors)
    except (ValueError, ImportError) as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot use {common['outdir']}: {exc}") from None
    if common["dry_run"]:
        return _print_plan(pipeline)
    quiet = common["quiet"]
    with tqdm(total=pipeline.total_frames(), unit="frame", disable=quiet,
              dynamic_ncols=True, desc=f"decode {name}") as progress:
        pipeline.progress = progress
        try:
            summary = pipeline.run()
        except DecodeFailed as exc:
            raise click.ClickException(f"decoding failed: {exc}") from None
    if not summary.interrupted:
        _clip_outputs(task, kinds, common, sources)
    _summarise(summary, quiet, task)


def _run_ray(task, kinds, outdir, common: dict) -> None:
    """The same run on a Ray cluster (vbkernels.distributed); the device is the actors'.
    The plan (listing, resume) runs here before Ray starts, so the bar knows its total."""
    from tqdm import tqdm

    from vbkernels.distributed import RayConnectionError, plan_files

    if common["max_pixels"] != "pillow":
        raise click.UsageError("--max-pixels works with --engine local; the Ray engine's "
                               "actors refuse images past Pillow's limit")
    dry_run = common["dry_run"]
    try:
        pipeline = plan_files(
            common["inputs"], task, outdir, address=common["ray_address"],
            verbose=common["verbose"], on_error=None if dry_run else _echo_error, kinds=kinds,
            device=common["device"], batch_size=common["batch_size"],
            workers=common["workers"], overwrite=common["overwrite"],
            keep_suffix=common["keep_suffix"], gpu_input=not common["no_gpu_input"],
            dry_run=dry_run, format=common["output_format"], shard_size=common["shard_size"],
            storage_options=common["storage"])
    except (ValueError, ImportError) as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:  # an object store that cannot be listed (no bucket, no access)
        raise click.ClickException(f"cannot use {common['outdir']}: {exc}") from None
    if dry_run:
        return _print_plan(pipeline)
    with tqdm(total=pipeline.total_frames(), unit="frame", disable=common["quiet"],
              dynamic_ncols=True, desc=f"decode {task.name} (ray)") as progress:
        pipeline.progress = progress
        try:
            summary = pipeline.run()
        except DecodeFailed as exc:
            raise click.ClickException(f"decoding failed: {exc}") from None
        except RayConnectionError as exc:
            raise click.ClickException(str(exc)) from None
        except ImportError as exc:
            raise click.UsageError(str(exc)) from None
    if not summary.interrupted:
        _clip_outputs(task, kinds, common, expand_inputs(common["inputs"])[0])
    _summarise(summary, common["quiet"], task)


def _frame_choice(common: dict):
    """--frames as a slice (None: every frame); the local engine only, for now."""
    from vbkernels.pipeline.clips import parse_frames

    text = common["frame_choice"]
    if text is None:
        return None
    if common["engine"] == "ray":
        raise click.UsageError("--frames works with the local engine only (not --engine ray)")
    try:
        return parse_frames(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--frames") from None


def _clip_outputs(task, kinds, common: dict, sources) -> None:
    """--stack and --contact-sheet: whole-clip files for every video input that is done."""
    from pathlib import Path

    from vbkernels.pipeline.clips import stack_video, video_contact_sheet
    from vbkernels.pipeline.manifest import read_manifest

    if not (common["stack"] or common["contact_sheet"]):
        return
    outdir, keep = Path(common["outdir"]), common["keep_suffix"]
    manifest = read_manifest(outdir)
    written = []
    for source in (s for s in sources if s.kind == "video"):
        if common["stack"]:
            written += [f"{path} {shape}" for path, shape in stack_video(
                source, outdir, task.suffixes(kinds), keep_suffix=keep, manifest=manifest)]
        if common["contact_sheet"]:
            sheet = video_contact_sheet(source, outdir, task.kinds["preview"],
                                        keep_suffix=keep, manifest=manifest)
            written += [str(sheet)] if sheet is not None else []
    if written and not common["quiet"]:
        click.echo("whole-clip outputs: " + ", ".join(written), err=True)


def _storage_options(common: dict) -> dict | None:
    """``--storage-option`` pairs as a dict (None when there are none); a bad pair or a
    bad ``--shard-size`` is a usage error."""
    from vbkernels.storage import is_remote, parse_storage_options
    from vbkernels.storage.shards import parse_size

    try:
        parse_size(common["shard_size"])
        options = parse_storage_options(common["storage_options"])
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if options and not is_remote(common["outdir"]):
        raise click.UsageError("--storage-option is for object-store outputs (-o s3://...)")
    return options or None


def _print_plan(pipeline) -> None:
    """``--dry-run``: one line per input (``decode``, ``skip`` or ``fail: why``) on
    stdout, then a count on stderr; exit 1 when an input would fail."""
    for source in pipeline.pending_sources():
        click.echo(f"decode  {source.path}")
    for row in pipeline.planned_rows:
        if row.status == "skipped":
            click.echo(f"skip    {row.path}")
        else:
            click.echo(f"fail    {row.path}: {row.error}")
    summary = pipeline.summary
    frames = pipeline.total_frames()
    frames = f" ({frames} frame(s))" if frames is not None else ""
    click.echo(f"dry run: {len(pipeline.pending_sources())} input(s) to decode{frames}, "
               f"{len(summary.skipped)} to skip (outputs exist), {len(summary.failed)} "
               f"failing; nothing was written", err=True)
    if summary.failed:
        raise SystemExit(1)


def _check_outdir(outdir) -> None:
    """A one-line error, before any work, when OUTDIR cannot be created or written."""
    import os

    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(
            f"cannot create the output directory {str(outdir)!r}: "
            f"{exc.strerror or exc}") from None
    if not os.access(outdir, os.W_OK | os.X_OK):
        raise click.ClickException(
            f"cannot write to the output directory {str(outdir)!r}: permission denied")


def _kinds(task, kinds, preview: bool) -> tuple:
    try:
        chosen = list(task.check_kinds(kinds))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--outputs") from None
    if preview and "preview" not in chosen:
        chosen.append("preview")
    has_camera = getattr(task, "has_camera", False)
    if "ply" in chosen and not has_camera:
        raise click.UsageError("--ply needs --intrinsics FX,FY,CX,CY or --fov DEGREES")
    if has_camera and "ply" not in chosen:
        raise click.UsageError("--intrinsics and --fov are for the point cloud: add --ply")
    if "preview" in chosen and task.name != "normals":
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise click.UsageError(
                f"{task.name} previews need matplotlib: pip install matplotlib") from None
    return task.check_kinds(chosen)


def _echo_error(item: str, message: str) -> None:
    click.echo(f"error: {item}: {message}", err=True)


def _echo_warning(item: str, message: str) -> None:
    """One line on stderr, above the progress bar rather than inside it."""
    import sys

    from tqdm import tqdm

    tqdm.write(f"warning: {item}: {message}", file=sys.stderr)


def _summarise(summary: RunSummary, quiet: bool, task=None) -> None:
    """Say what happened; exit 130 after Ctrl-C, 143 after SIGTERM, 1 when an input
    failed or a manifest row could not be recorded."""
    import signal

    if summary.interrupted:
        _ignore_further_interrupts()
        _report_interrupt(summary)
        raise SystemExit(128 + int(getattr(summary, "signal", None) or signal.SIGINT))
    if not quiet:
        click.echo(_summary_line(summary), err=True)
        if hasattr(task, "range_note"):  # decode colormap: the range the values were given
            click.echo(task.range_note(), err=True)
    if summary.failed:
        raise click.ClickException(f"{len(summary.failed)} input(s) failed; see the errors above")
    if getattr(summary, "not_recorded", 0):
        raise click.ClickException(f"{summary.not_recorded} manifest row(s) could not be "
                                   "written; see the error above")


def _summary_line(summary: RunSummary) -> str:
    if summary.skipped and not summary.done and not summary.failed:
        return (f"nothing to decode: all {len(summary.skipped)} input(s) are done already "
                "(--overwrite redoes them)")
    skipped = (f"; {len(summary.skipped)} input(s) skipped (outputs exist)"
               if summary.skipped else "")
    if not summary.frames:
        return f"no frames decoded from {summary.inputs} input(s){skipped}"
    rate = summary.frames / summary.seconds if summary.seconds > 0 else 0.0
    return (f"decoded {summary.frames} frame(s) from {len(summary.done)} input(s) in "
            f"{summary.seconds:.1f} s ({rate:.1f} frames/s){skipped}")


def _report_interrupt(summary: RunSummary) -> None:
    import signal

    if getattr(summary, "signal", None) == signal.SIGTERM:
        click.echo("\nSIGTERM: stopping as for Ctrl-C", err=True)
    click.echo(f"\ninterrupted: wrote {summary.frames} frame(s); {len(summary.done)} input(s) "
               f"complete, {len(summary.unfinished)} not", err=True)
    for path in summary.unfinished[:_LISTED]:
        click.echo(f"  not finished: {path}", err=True)
    if len(summary.unfinished) > _LISTED:
        click.echo(f"  ... and {len(summary.unfinished) - _LISTED} more", err=True)
    click.echo("rerun the same command to finish them (done inputs are skipped)", err=True)
