"""The Ray engine: the same decode jobs as the local pipeline, on a Ray cluster.

``decode_files(inputs, task, output, **options)`` (``vbkernels decode TASK ... --engine
ray``) plans like the local engine — the same output names, name-clash checks, resume rule
and manifest rows (:class:`vbkernels.pipeline.LocalPipeline`'s ``plan``) — and then runs
the inputs still to do through Ray Data::

    read_binary_files(paths, include_paths=True)     read tasks (local paths or any
        |                                            filesystem Ray reads: s3://, gs://)
    map(_read_row)                                   CPU tasks: bytes -> (H, W, 3) frame
        |                                            (a video passes as bytes: one row)
    map_batches(_DecodeActor, ActorPoolStrategy)     one actor per GPU (num_gpus=1), or per
        |                                            CPU on CPU-only clusters: groups frames
        v                                            by shape, decodes, WRITES the outputs
    manifest rows -> the driver -> OUT/manifest.jsonl

Inputs whose outputs all exist are dropped before the read (unless ``overwrite``), so a
resumed job reads only what is left. Inputs are never resized or re-encoded: the frame a
read task hands over is the file's pixels (``vbkernels.pipeline.frames_from_bytes``).

The output is either one file system every node writes to (NFS, Lustre, a FUSE mount of a
bucket): actors write their files there atomically and the driver appends the manifest
there; or an object store (``s3://bucket/prefix``, ``vbkernels.storage``): actors put each
output whole and the driver writes the manifest as part objects. Local input paths must be
visible on every node.

Sharded outputs (``format="webdataset"|"parquet"``, :class:`RayShardedPipeline`): the
driver plans the shards and each shard is one Ray task (spread over the nodes) that reads
its inputs, decodes, and puts the shard and then its commit record
(``vbkernels.storage.shards``).

Connecting (``connect``): with no address and no ``RAY_ADDRESS`` a new local cluster is
started bound to 127.0.0.1 (``start_local_ray``); an explicit ``HOST:PORT`` is checked for
a listener first, and a refused connection (token authentication) is a
``RayConnectionError`` that says what to set. Ray logs at WARNING unless ``verbose``.
After Ctrl-C the job is shut down first, then the inputs whose outputs the actors had all
written get their ``ok`` rows (``LocalPipeline._wrap_up``), so no finished input is left
for a rerun to call merely ``skipped``.

Ray is imported only inside the functions here, so nothing else in vbkernels pays for it.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import json
import logging
import os
import socket
import time
from pathlib import Path, PurePosixPath

import numpy as np

from vbkernels.pipeline import (
    BatchDecoder,
    LocalPipeline,
    ManifestRow,
    PipelineOptions,
    RunSummary,
    Source,
    expand_inputs,
    frames_from_bytes,
    output_stem,
    resolve_device,
    source_kind,
    write_frame,
)
from vbkernels.pipeline.device import batch_key, same_shape_batches
from vbkernels.pipeline.gpu_input import (
    decode_jpeg_bytes,
    jpeg_decoder_available,
    video_decoder_available,
    video_frames_on,
)
from vbkernels.pipeline.local import DecodeFailed, Interrupted, split_options
from vbkernels.pipeline.manifest import relative_output
from vbkernels.pipeline.outputs import check_output
from vbkernels.pipeline.runs import backend_used
from vbkernels.pipeline.sharded import ShardedPipeline, write_shard_job
from vbkernels.pipeline.sources import JPEG_SUFFIXES

_NO_FRAME = np.zeros((0, 0, 3), np.uint8)  # the frame column of a row that carries bytes


@dataclasses.dataclass
class RayOptions:
    address: str | None = None   # None: Ray's own choice (RAY_ADDRESS, else a local start)
    actors: int | None = None    # decode actors; None: one per GPU, else ``workers`` or CPUs
    num_gpus: float | None = None  # per actor; None: 1 where the cluster has GPUs, else 0
    actor_cpus: int | None = None  # per actor, also its output-encoding threads; None:
    #   1 on CPU-only clusters; with GPUs half the CPUs per GPU (the other half read files)
    verbose: bool = False        # Ray's INFO logging and the actors' output on the driver


def decode_files(inputs, task, output, *, address: str | None = None,
                 actors: int | None = None, num_gpus: float | None = None,
                 actor_cpus: int | None = None, verbose: bool = False, on_error=None,
                 progress=None, **options) -> RunSummary:
    """Decode ``inputs`` (paths, directories, globs, or URIs such as ``s3://bucket/dir``)
    with ``task`` (a ``Task`` or a task name) into ``output`` (a local directory every
    node writes, or a ``file://`` URI; other schemes raise ``UnsupportedOutput`` before
    anything starts) on a Ray cluster.

    ``options`` are the local engine's (``PipelineOptions`` fields and, for a task name,
    ``build_task``'s): the same files with the same names come out. ``device`` is each
    actor's device; ``workers`` is the number of actors on a CPU-only cluster. ``address``
    is ``ray.init``'s (``"auto"`` for a running cluster; None: ``RAY_ADDRESS``, else the
    cluster ``ray start`` started on this machine, else a new local cluster bound to
    127.0.0.1); an already initialised Ray is used as it is. ``actors``, ``num_gpus`` and
    ``actor_cpus`` size the actor pool (see ``RayOptions``); ``verbose`` keeps Ray's INFO
    logging. Returns the run's summary (``failed`` non-empty: exit 1); Ctrl-C raises
    ``Interrupted`` carrying it, as the local engine does; a cluster that cannot be
    reached raises ``RayConnectionError`` saying what to do.
    """
    pipeline = plan_files(inputs, task, output, address=address, actors=actors,
                          num_gpus=num_gpus, actor_cpus=actor_cpus, verbose=verbose,
                          on_error=on_error, progress=progress, **options)
    if pipeline.options.dry_run:
        return pipeline.summary
    summary = pipeline.run()
    if summary.interrupted:
        raise Interrupted(summary)
    return summary


def plan_files(inputs, task, output, *, address: str | None = None,
               actors: int | None = None, num_gpus: float | None = None,
               actor_cpus: int | None = None, verbose: bool = False, on_error=None,
               progress=None, **options) -> RayPipeline:
    """``decode_files``' first half: the planned pipeline (inputs listed, names checked,
    done inputs skipped; Ray not started yet). ``.total_frames()`` sizes a progress bar,
    ``.run()`` does the rest; with ``dry_run=True`` nothing is written and
    ``.planned_rows`` holds the rows the plan would record."""
    outdir = check_output(output)  # before anything is listed or read
    task, pipeline_options = split_options(task, options)
    sizes: dict = {}
    sources, errors = expand_any(inputs, sizes)
    ray_options = RayOptions(address, actors, num_gpus, actor_cpus, verbose)
    if pipeline_options.format != "files":
        pipeline = RayShardedPipeline(task, outdir, pipeline_options, ray_options, on_error,
                                      progress)
        pipeline.plan(sources, errors, sizes)
        return pipeline
    pipeline = RayPipeline(task, outdir, pipeline_options, ray_options, on_error, progress)
    pipeline.plan(sources, errors)
    return pipeline


# ------------------------------------------------------------------------- inputs


def expand_any(inputs, sizes: dict | None = None) -> tuple[list[Source], list[tuple[str, str]]]:
    """``expand_inputs`` for local paths; URIs (``scheme://...``) are listed through
    pyarrow's file systems, with output names relative to the URI given, as for folders
    (``sizes``, when given, gets each listed URI's size in bytes, for shard planning)."""
    sources, errors = [], []
    for item in inputs:
        if "://" not in str(item):
            found, failed = expand_inputs([item])
            sources += found
            errors += failed
            continue
        try:
            sources += _expand_uri(str(item), sizes)
        except Exception as exc:
            errors.append((str(item), f"cannot list: {exc}"))
    return sources, errors


def _expand_uri(uri: str, sizes: dict | None = None) -> list[Source]:
    """Sources under a URI (a file or a prefix); their ``path`` is the URI."""
    from pyarrow import fs

    filesystem, root = fs.FileSystem.from_uri(uri)
    scheme = uri.split("://", 1)[0]
    info = filesystem.get_file_info(root)
    if info.type == fs.FileType.File:
        return [Source.from_name(uri)]
    if info.type != fs.FileType.Directory:
        raise FileNotFoundError("no such file or prefix")
    listed = {f.path: f.size for f in filesystem.get_file_info(fs.FileSelector(root,
                                                                                recursive=True))
              if f.type == fs.FileType.File and source_kind(f.path)}
    found = sorted(listed)
    if not found:
        raise FileNotFoundError("prefix holds no image or video files")
    if sizes is not None:
        sizes.update({f"{scheme}://{path}": size for path, size in listed.items()})
    prefix = root.rstrip("/") + "/"
    return [Source.from_name(f"{scheme}://{path}", PurePosixPath(path[len(prefix):]))
            for path in found]


def _ray_path(source: Source) -> str:
    """The path handed to ``read_binary_files``: absolute for a local file (whatever the
    driver's working directory), the URI for anything else."""
    text = str(source.path)
    return text if "://" in text else os.path.abspath(text)


def _row_key(path: str) -> str:
    """How a read row finds its source: Ray reports a URI's path without its scheme
    (``bucket/a.png`` for ``s3://bucket/a.png``), so both sides drop it."""
    return path.split("://", 1)[1] if "://" in path else path


# ------------------------------------------------------------------ the CPU read tasks


def _read_row(row: dict, bytes_on_device: bool = False) -> dict:
    """One file's bytes -> its frame (images), or the bytes themselves for a video (one
    video is one row of work, read frame by frame in the actor) and, when the actors
    decode JPEGs on their GPUs, for a JPEG. A file that cannot be read becomes an error."""
    path = row["path"]
    keep_bytes = source_kind(path) == "video" or (
        bytes_on_device and PurePosixPath(path).suffix.lower() in JPEG_SUFFIXES)
    if keep_bytes:
        return {"path": path, "frame": _NO_FRAME, "data": row["bytes"], "error": ""}
    try:
        frame = next(frames_from_bytes(row["bytes"], path))
    except Exception as exc:
        return {"path": path, "frame": _NO_FRAME, "data": b"", "error": f"cannot read: {exc}"}
    return {"path": path, "frame": frame, "data": b"", "error": ""}


# ---------------------------------------------------------------- the decode actors


class _DecodeActor:
    """Decodes batches of rows on its device and writes every output itself; returns one
    manifest row per input (path, frames, outputs as JSON, status, error)."""

    def __init__(self, task, outdir: str, kinds, keep_suffix: bool, device, batch_size: int,
                 gpu_input: bool, sources: dict, write_threads: int, store=None):
        self.task = task
        self.outdir = Path(outdir)
        self.store = store  # an object store (vbkernels.storage): outdir is "." then
        self.kinds = kinds
        self.keep_suffix = keep_suffix
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.gpu_input = gpu_input and self.device.type == "cuda"
        self.sources = sources  # _row_key(read_binary_files path) -> Source
        self.decoder = BatchDecoder(task, self.device)
        self.backend = backend_used(task, self.device)
        # Encoding (zlib, np.save) mostly runs outside the GIL: threads overlap it with
        # the next batch's decode.
        self.writer = cf.ThreadPoolExecutor(max(1, write_threads))

    def __call__(self, batch: dict) -> dict:
        results = {}
        images = []  # (source, frame) of the rows that are images
        for path, frame, data, error in zip(batch["path"], batch["frame"], batch["data"],
                                            batch["error"]):
            source = self.sources[_row_key(path)]
            state = results[path] = _Result(source)
            if error:
                state.error = error
            elif source.kind == "video":
                self._video(state, data)
            elif len(data):  # a JPEG left for nvJPEG
                images.append((state, self._jpeg(state, data)))
            else:
                images.append((state, frame))
        images = [(state, frame) for state, frame in images if frame is not None]
        self._images(images)
        return _columns([state.row(self.outdir, self.backend) for state in results.values()])

    # -- images: grouped by shape, batches of at most batch_size ------------------------

    def _images(self, images) -> None:
        groups: dict = {}
        for state, frame in images:
            groups.setdefault(batch_key(frame), []).append((state, 0, frame))
        self._decode_and_write(item for group in groups.values() for item in group)

    def _jpeg(self, state, data):
        """A JPEG's frame: nvJPEG on this actor's GPU when it has one and torchvision,
        else Pillow (as a read task would have done)."""
        try:
            if self.gpu_input and jpeg_decoder_available():
                return decode_jpeg_bytes(data, self.device)
            return next(frames_from_bytes(data, str(state.source.path)))
        except Exception as exc:
            state.error = f"cannot read: {exc}"
            return None

    # -- videos: frame by frame, never whole in memory --------------------------------

    def _video(self, state, data) -> None:
        if self.gpu_input and video_decoder_available():
            frames = video_frames_on(data, self.device)
        else:
            frames = frames_from_bytes(data, str(state.source.path))
        try:
            self._decode_and_write((state, index, frame) for index, frame in enumerate(frames))
        except DecodeFailed:
            raise
        except Exception as exc:
            state.error = f"cannot read: {exc}"

    # -- the decode/write loop shared by both ----------------------------------------

    def _decode_and_write(self, items) -> None:
        """Consecutive same-shape items in batches; batch i+1 is submitted before batch i
        is written, so a CUDA device decodes while the host encodes. A reader that fails
        part-way still gets the frames before the failure written."""
        pending = None
        try:
            for batch in same_shape_batches(items, self.batch_size):
                try:
                    started = (batch, self.decoder.submit([frame for _, _, frame in batch]))
                except (RuntimeError, ValueError) as exc:
                    raise DecodeFailed(str(exc)) from None
                if pending is not None:
                    self._write(*pending)
                pending = started
        finally:
            if pending is not None:
                self._write(*pending)

    def _write(self, batch, pending) -> None:
        arrays = pending.result()
        futures = []
        for i, (state, index, _) in enumerate(batch):
            stem = output_stem(state.source, index, self.outdir, keep_suffix=self.keep_suffix)
            frame = {name: value[i] for name, value in arrays.items()}
            futures.append((state, self.writer.submit(write_frame, self.task, frame, stem,
                                                      self.kinds, self.store)))
        for state, future in futures:
            try:
                state.outputs += future.result()
                state.frames += 1
            except Exception as exc:
                state.error = state.error or f"cannot write: {exc}"


@dataclasses.dataclass
class _Result:
    source: Source
    frames: int = 0
    outputs: list = dataclasses.field(default_factory=list)
    error: str | None = None

    def row(self, outdir: Path, backend: str) -> dict:
        error = self.error or (None if self.frames else "no frames")
        return {"path": str(self.source.path), "frames": self.frames,
                "outputs": json.dumps(sorted(relative_output(p, outdir) for p in self.outputs)),
                "status": "failed" if error else "ok", "error": error or "",
                "backend": backend}


def _columns(rows: list[dict]) -> dict:
    return {key: np.array([row[key] for row in rows])
            for key in ("path", "frames", "outputs", "status", "error", "backend")}


# --------------------------------------------------------------------- the driver


def require_ray():
    """The ``ray`` module with Ray Data, or an ImportError that says how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ImportError(f"the Ray engine needs Ray Data: pip install 'vbkernels[ray]' "
                          f"({exc})") from None
    return ray


class RayConnectionError(RuntimeError):
    """The Ray cluster an address names could not be joined; the message says what to
    try."""


def connect(options: RayOptions) -> bool:
    """Join or start Ray for one run; True when this call did (the run then disconnects,
    or shuts its local cluster down, at the end). Ray's logging stays at WARNING and the
    actors' output off the driver unless ``options.verbose``."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    level = logging.INFO if options.verbose else logging.WARNING
    settings = {"include_dashboard": False, "logging_level": level,
                "log_to_driver": options.verbose}
    address = options.address or os.environ.get("RAY_ADDRESS") or None
    if address is None and not _started_by_ray_start():
        start_local_ray(**settings)
    else:
        _check_reachable(address)
        try:
            with _loopback_mode() if _is_loopback(address) else contextlib.nullcontext():
                ray.init(address=options.address, **settings)
        except (ConnectionError, ray.exceptions.AuthenticationError) as exc:
            raise RayConnectionError(_connection_advice(
                address or "the address `ray start` left on this machine", exc)) from None
    _quiet_ray_data(level)
    return True


def start_local_ray(**init_options):
    """``ray.init`` for a new cluster on this machine whose every process listens on
    127.0.0.1 only, and returns its context (the tests' clusters start here too).

    Left alone, Ray gives a Linux node the address of the machine's first network
    interface and its servers listen on every interface; Ray's own loopback mode (its
    default on macOS and Windows) is switched on for the start: the node address is
    127.0.0.1 and then its gRPC servers bind to loopback only."""
    ray = require_ray()
    # Ray turns token authentication on for a new cluster and logs a notice saying so:
    # right for a cluster nobody else joins, and nothing for the user to act on.
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    notice_level = notice.level
    notice.setLevel(logging.ERROR)
    try:
        with _loopback_mode():
            return ray.init(address="local", _node_ip_address="127.0.0.1", **init_options)
    finally:
        notice.setLevel(notice_level)


@contextlib.contextmanager
def _loopback_mode():
    """Ray's loopback mode while a cluster starts or a driver joins one on 127.0.0.1
    (otherwise Ray rewrites 127.0.0.1 into the machine's network address, where a
    loopback cluster does not listen)."""
    from ray._private import ray_constants

    variable = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
    saved = ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(variable)
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ[variable] = "0"  # for the processes a start spawns
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved[0]
        if saved[1] is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = saved[1]


def _is_loopback(address: str | None) -> bool:
    host = (address or "").split("://", 1)[-1].rpartition(":")[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


def _started_by_ray_start() -> bool:
    """Whether ``ray start`` left a cluster address on this machine (``ray.init()`` with no
    address joins that cluster rather than starting one)."""
    try:
        from ray._private.utils import read_ray_address

        return bool(read_ray_address())
    except Exception:  # noqa: BLE001 - a private helper; without it, start our own
        return False


def _check_reachable(address: str | None) -> None:
    """Fail at once, with the address, when nothing listens at ``HOST:PORT`` (Ray would
    retry for about 20 s and then raise with a traceback)."""
    if address in (None, "auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return  # not HOST:PORT: Ray reports what it makes of it
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass
    except OSError as exc:
        raise RayConnectionError(
            f"nothing answers at --ray-address {address} ({exc}). Check the head node's "
            f"address and GCS port (`ray status` on the head node prints it, default 6379), "
            f"or run on a node of the cluster with --ray-address auto") from None


def _connection_advice(address: str, exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"cannot join the Ray cluster at {address} ({first}). Something answers there, so "
        f"the cluster most likely refused this client: clusters with token authentication "
        f"(Ray 2.60 turns it on for a new cluster, and for `ray start` where a token "
        f"exists) need it on the client too, and Ray does not turn it on for an explicit "
        f"address. Set RAY_AUTH_MODE=token and the "
        f"cluster's token in RAY_AUTH_TOKEN (or in ~/.ray/auth_token, or a file named by "
        f"RAY_AUTH_TOKEN_PATH; `ray get-auth-token` on the head node prints it), or run on "
        f"a node of the cluster with --ray-address auto")


def _quiet_ray_data(level: int) -> None:
    """Ray Data logs each dataset's plan and progress at INFO through its own loggers,
    and warns that its progress bars are off (the command line draws its own)."""
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(level)
    logging.getLogger("ray.data._internal.progress").setLevel(
        level if level < logging.WARNING else logging.ERROR)


def _rows(dataset):
    """The dataset's rows. A failure of the job itself (an actor that cannot start on its
    device, a decode that fails: bad files are rows, not failures) is ``DecodeFailed``
    with the last line of the deepest error that says something (Ray's own wrappers end
    with the actor's ``ValueError: ...``)."""
    try:
        yield from dataset.iter_rows()
    except Exception as exc:  # noqa: BLE001 - Ray wraps the actor's error in its own types
        message, cause = f"{type(exc).__name__}: {exc}", exc
        while cause is not None:
            lines = str(cause).strip().splitlines()
            message = lines[-1] if lines else message
            cause = getattr(cause, "cause", None) or cause.__cause__
        raise DecodeFailed(message) from exc


class RayPipeline(LocalPipeline):
    """The local engine's planning (names, clashes, the resume rule, manifest rows) with
    the run handed to Ray Data. The driver itself never decodes a frame."""

    engine = "ray"

    def __init__(self, task, outdir: Path, options: PipelineOptions, ray_options: RayOptions,
                 on_error=None, progress=None):
        # Plan on the CPU: the device option is each actor's, resolved on its node.
        super().__init__(task, outdir, dataclasses.replace(options, device="cpu"), on_error,
                         progress)
        self.actor_device = options.device
        self.ray_options = ray_options
        self.workers = options.workers  # None: the actor count follows the cluster

    def _backend(self) -> str:
        # The driver decodes nothing: its rows (skipped, failed before reading) name the
        # backend asked for; each actor's rows name the one it resolved on its device.
        return self.task.backend

    def settings(self) -> dict:
        ray_options = dataclasses.asdict(self.ray_options)
        ray_options.pop("verbose")
        return {**super().settings(), "device": str(self.actor_device),
                "workers": self.workers, **ray_options}

    def run(self) -> RunSummary:
        """Run the planned inputs on Ray; Ctrl-C (SIGINT) stops the job, and the inputs
        whose outputs the actors had all written get their ``ok`` rows all the same
        (checked on disk once the job is gone, ``LocalPipeline._wrap_up``)."""
        start = time.perf_counter()
        reported = set()
        try:
            if self._states:
                self._run_on_ray(reported)
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            self.summary.seconds = time.perf_counter() - start
            self.summary.unfinished = [str(s.source.path) for s in self._states
                                       if str(s.source.path) not in reported]
            self._wrap_up()
        return self.summary

    def _run_on_ray(self, reported: set) -> None:
        ray = require_ray()
        started_here = connect(self.ray_options)
        try:
            for row in _rows(self._dataset()):
                reported.add(row["path"])
                self._report(row)
            for state in self._states:  # deleted between the plan and the read
                if str(state.source.path) not in reported:
                    reported.add(str(state.source.path))
                    self._report({"path": str(state.source.path), "frames": 0,
                                  "outputs": "[]", "status": "failed",
                                  "error": "cannot read: no such file", "backend": ""})
        finally:
            if started_here:
                # Also after Ctrl-C: the job's actors end with it, so nothing writes into
                # OUT after this returns.
                with contextlib.suppress(Exception):
                    ray.shutdown()

    def _dataset(self):
        ray = require_ray()
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the command line draws its own bar
        resources = ray.cluster_resources()
        gpus = self.ray_options.num_gpus
        if gpus is None:
            gpus = 1 if resources.get("GPU", 0) >= 1 else 0
        actors = self.ray_options.actors or (
            int(resources["GPU"] // gpus) if gpus else
            self.workers or max(1, int(resources.get("CPU", 1))))
        # A GPU actor encodes and writes its own outputs (a 16-bit PNG costs a core
        # several ms): threads on the CPUs it holds keep that from capping the GPU.
        cpus = self.ray_options.actor_cpus or (
            max(1, int(resources.get("CPU", 1) / max(resources.get("GPU", 1), 1) / 2))
            if gpus else 1)
        sources = {_row_key(_ray_path(s.source)): s.source for s in self._states}
        bytes_on_device = bool(gpus) and self.options.gpu_input
        # Reading bytes is I/O: read tasks take no CPU slot, so they run beside actors
        # that hold every CPU (with a slot each they would wait for one forever), and at
        # most one per CPU run at once (unbounded, Ray would start a process per file).
        paths = [_ray_path(s.source) for s in self._states]
        dataset = ray.data.read_binary_files(
            paths, include_paths=True, num_cpus=0, ignore_missing_paths=True,
            concurrency=max(1, int(resources.get("CPU", 1))))
        dataset = dataset.map(_read_row, fn_kwargs={"bytes_on_device": bytes_on_device})
        return dataset.map_batches(
            _DecodeActor,
            fn_constructor_kwargs={
                "task": self.task, "outdir": str(self.outdir), "kinds": self.kinds,
                "keep_suffix": self.options.keep_suffix, "device": self.actor_device,
                "batch_size": self.options.batch_size, "gpu_input": self.options.gpu_input,
                "sources": sources, "write_threads": cpus, "store": self.store},
            batch_size=self.options.batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=gpus, num_cpus=cpus)

    def _report(self, row: dict) -> None:
        error = row["error"] or None
        manifest_row = ManifestRow(row["path"], int(row["frames"]), json.loads(row["outputs"]),
                                   row["status"], error, backend=row["backend"] or None)
        if error is None:
            self.summary.done.append(row["path"])
        else:
            self.summary.failed[row["path"]] = error
            self.on_error(row["path"], error)
        self.summary.frames += manifest_row.frames
        if self.progress is not None:
            self.progress.update(manifest_row.frames)
        self._record(manifest_row)


# ------------------------------------------------------------- sharded outputs on Ray


def _ray_shard_job(*args):
    """One shard as a Ray task: its manifest rows and the node that wrote it."""
    import ray

    rows = write_shard_job(*args)
    return rows, ray.get_runtime_context().get_node_id()


class RayShardedPipeline(ShardedPipeline):
    """``--format webdataset|parquet`` on Ray: the driver plans the shards (listing the
    commit records once), and each shard is one Ray task (one CPU, or one GPU with
    ``num_gpus``) that reads its inputs itself (local paths visible on every node, or
    URIs through pyarrow), decodes, encodes and puts the shard and then its record. Tasks
    are spread over the nodes; a task lost with its node is retried by Ray and writes the
    same name with the same bytes. ``nodes`` counts the shards each node wrote."""

    engine = "ray"

    def __init__(self, task, output, options: PipelineOptions, ray_options: RayOptions,
                 on_error=None, progress=None):
        super().__init__(task, output, dataclasses.replace(options, device="cpu"), on_error,
                         progress)
        self.actor_device = options.device
        self.ray_options = ray_options
        self.nodes: dict[str, int] = {}

    def run(self) -> RunSummary:
        start = time.perf_counter()
        if self.options.dry_run or not self.plans:
            return self.summary
        ray = require_ray()
        started_here = connect(self.ray_options)
        try:
            self._run_tasks(ray)
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            if started_here:
                with contextlib.suppress(Exception):
                    ray.shutdown()
            self.summary.seconds = time.perf_counter() - start
        return self.summary

    def _run_tasks(self, ray) -> None:
        gpus = self.ray_options.num_gpus
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        job = ray.remote(_ray_shard_job).options(
            num_cpus=self.ray_options.actor_cpus or 1, num_gpus=gpus,
            scheduling_strategy="SPREAD")
        plans = {job.remote(*self.job_arguments(plan), self.actor_device,
                            self.before_commit): plan for plan in self.plans}
        pending = list(plans)
        try:
            while pending:
                (ready,), pending = ray.wait(pending, num_returns=1)
                self._collect_task(ray, plans[ready], ready)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            self.summary.unfinished += [str(s.path) for ref in pending
                                        for s in plans[ref].sources]
            raise

    def _collect_task(self, ray, plan, ref) -> None:
        try:
            rows, node = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - Ray wraps the task's error
            lines = str(exc).strip().splitlines()
            self.shard_failed(plan, f"cannot write shard {plan.id}: "
                                    f"{lines[-1] if lines else type(exc).__name__}")
            return
        self.nodes[node] = self.nodes.get(node, 0) + 1
        self.report(plan, rows)
