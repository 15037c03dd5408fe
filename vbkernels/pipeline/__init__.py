"""The file pipeline: images and videos in, decoded arrays out, every stage a function.

``vbkernels decode`` runs :func:`decode_files` (the local engine); a distributed engine
(e.g. Ray Data actors) calls the same stage functions on file bytes it reads itself.

Stages (each testable alone)
----------------------------
*Task* — ``build_task(name, **options) -> Task`` for ``depth``, ``normals``, ``seg``,
``instances``, with the command line's options (``backend``; depth ``lam, c, max_depth,
png_scale, vmin, vmax``; normals ``convention``; seg ``palette, max_distance``; instances
``max_distance, min_pixels, background, merge_distance, split_components``). A task is
plain picklable data:

- ``task.decode(rgb)``: (N, H, W, 3) uint8 tensor on the device -> dict of (N, ...)
  tensors on that device (``depth``; ``normals``; ``labels``; ``labels`` + ``colours``).
- ``task.encode(arrays, kinds)``: one frame's arrays (NumPy, the N axis gone) ->
  ``{suffix: file bytes}`` for the chosen output kinds (``npy``, ``png``, ``preview``;
  ``png16`` is another name for ``png``), so encoding runs wherever the caller likes.
- ``task.suffixes(kinds)`` -> ``[".depth.npy", ".depth.png", ...]``; ``kinds=None`` is
  the task's default (everything but the preview).
- ``task.for_kinds(kinds)``: the task set up for those kinds (depth, normals and seg
  decode the full per-pixel ``distance`` map only for the ``distance`` kind); every
  engine calls it. ``task.warning(arrays)``: one frame's one-line warning or None (most
  pixels far from the encoding; a colormap frame at the map's ends); ``write_frame``
  hands it back on its list of paths (``.warning``), and the local engine reports the
  first one per input (docs/format.md, Checking inputs).

*Read* — ``expand_inputs(inputs) -> (sources, errors)`` (paths, directories, globs);
``read_frames(source)`` yields (H, W, 3) uint8 frames; ``frames_from_bytes(data, name)``
does the same from a file's contents (images through ``read_image``, videos through PyAV
on a BytesIO); ``read_image(path_or_file)`` is the one image reader.

*Name* — ``output_stem(source, index, outdir, keep_suffix=False)``: ``OUT/a`` for
``a.png``, ``OUT/clip/000007`` for frame 7 of ``clip.mp4``; ``keep_suffix`` gives
``OUT/a.png`` so ``a.png`` and ``a.jpg`` do not collide. A file name is that plus a suffix.

*Decode on a device* — ``BatchDecoder(task, device).submit(frames) -> PendingBatch``;
``.result()`` gives host arrays. On CUDA: pinned staging, upload on a side stream,
asynchronous download (keep one batch pending to overlap).

*Write* — ``write_frame(task, arrays, stem, kinds)`` encodes and writes atomically
(``vbkernels.files.write_atomic``) and returns the paths.

*Whole clips* — ``vbkernels.pipeline.clips``: ``select_frames``/``frame_numbers`` (the
``frames`` option, ``--frames``), ``stack_video`` (one ``(T, ...)`` ``.npy`` per output,
``--stack``) and ``video_contact_sheet`` (``--contact-sheet``), built after the run from
the frames the manifest lists.

*One file* — ``decode_file(task, source, outdir, data=..., kinds=..., device=...)`` runs
all of the above for one file in the calling process and returns its manifest row (a bad
file is a ``failed`` row): the unit of work of a distributed engine (``Source.from_name(uri,
name)`` builds the source for a URI whose bytes the engine read).

*Manifest and resume* — ``ManifestWriter(outdir).append(ManifestRow(...))`` appends one
JSON line per input to ``OUT/manifest.jsonl`` (``path, frames, outputs, status, error``,
and ``run, time, engine, backend``: :mod:`.runs` gives each invocation an id and leaves
``OUT/runs/<run>.json`` + ``OUT/summary.json``);
``is_done(source, suffixes, outdir, keep_suffix=, manifest=read_manifest(outdir))`` is the
resume rule every engine applies: skip an input iff all its outputs exist (videos: its
newest ok row lists them all and they exist); anything partial is redone.

*Where outputs go* — ``output`` is a folder or an object-store URI (``s3://``,
fsspec schemes: ``vbkernels.storage``); ``format="webdataset"|"parquet"`` writes shards
with commit records instead of files (``vbkernels.pipeline.sharded``,
``vbkernels.storage.shards``).

The local engine
----------------
``decode_files(inputs, task, output, **options)`` (options: ``PipelineOptions`` fields —
``kinds, device, batch_size, workers, overwrite, keep_suffix, gpu_input, manifest,
dry_run, max_pixels, frames, format, shard_size, storage_options`` — plus ``build_task``
options when ``task`` is a name) returns a ``RunSummary``. ``output`` passes
``outputs.check_output`` first (a local directory, a ``file://`` URI, or an object-store URI
that ``vbkernels.storage`` can write; any other ``scheme://`` is ``UnsupportedOutput``,
before any work). See ``vbkernels.pipeline.local`` for the stages, the memory bound and
Ctrl-C/SIGTERM behaviour, and ``vbkernels.pipeline.workers`` for the worker processes (one
task each, replaced when one dies, never outliving the command).
"""

from .device import BatchDecoder, PendingBatch, resolve_device
from .local import (
                    DecodeFailed,
                    Interrupted,
                    LocalPipeline,
                    PipelineOptions,
                    RunSummary,
                    decode_files,
                    default_workers,
                    write_frame,
)
from .manifest import (
                    MANIFEST_NAME,
                    ManifestRow,
                    ManifestWriter,
                    frame_outputs,
                    input_key,
                    is_done,
                    read_manifest,
)
from .one import decode_file
from .sources import (
                    Source,
                    expand_inputs,
                    frame_count,
                    frames_from_bytes,
                    output_stem,
                    read_frames,
                    read_image,
                    source_kind,
)
from .tasks import OUTPUT_KINDS, TASKS, Task, build_task, depth_to_png16, labels_to_png

__all__ = [
    "BatchDecoder", "DecodeFailed", "Interrupted", "LocalPipeline", "MANIFEST_NAME", "ManifestRow",
    "ManifestWriter", "OUTPUT_KINDS", "decode_file", "PendingBatch", "PipelineOptions",
    "RunSummary",
    "Source", "TASKS", "Task", "build_task", "decode_files", "default_workers",
    "depth_to_png16", "expand_inputs", "frame_count", "frame_outputs", "frames_from_bytes",
    "input_key", "is_done", "labels_to_png", "output_stem", "read_frames", "read_image",
    "read_manifest", "resolve_device", "source_kind", "write_frame",
]
