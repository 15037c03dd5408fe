"""The single-machine engine: read in worker processes, decode in batches on the device,
encode and write in the same workers, with bounded queues between the stages.

::

    inputs --(pool: read_image)--> read-ahead window --> same-size batches
           --(BatchDecoder, one batch in flight)--> per-frame write tasks (pool: encode+write)

That is the path of every frame on a GPU, and of video frames on the CPU. An image decoded
on the CPU instead runs its whole chain in one worker (``read_decode_write``: read, decode,
encode, write): the kernel costs a few milliseconds a frame there, batching it brings
nothing, and no frame or decoded array then crosses a process boundary. Measured on the
2-core CI machine (32 noisy 1080p depth PNGs): 8.7 frames/s through batches of 16 against
13-14 frames/s per file in the workers.

Images are read in the worker pool (Pillow holds the GIL for much of a PNG decode, so
threads would serialise on it; processes scale per core); a video is read by one thread
of the main process (PyAV's FFmpeg decode runs its own threads outside the GIL). Frames
keep their input order through the batches, so names and contents do not depend on the
worker count; only the order in which files appear on disk does. Frames and decoded arrays
travel between the processes pickled through the pool's pipes (a copy each way, received
by a thread of the main process); handing them over in shared memory would save those
copies and is the next step for many-core GPU machines.

The workers are a :class:`~.workers.WorkerPool`: a worker that dies (the out-of-memory
killer) fails only the input it was on and is replaced; none outlives the main process.
Ctrl-C and SIGTERM stop a run the same way (``run``): queued files are dropped, the files
in flight finish, and a second signal ends the workers at once.

Memory bound: at most ``read_ahead`` frames read ahead (default ``2 * workers`` or one
batch, whichever is larger; a video thread holds at most one batch), one batch being
formed, one batch in flight on the device, and ``2 * workers`` frames' outputs being
written. So RAM holds about ``(read_ahead + 2 * batch_size)`` input frames plus
``(batch_size + 2 * workers)`` output frames, whatever the length of a video.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vbkernels.files import remove_stale_temporaries, write_atomic
from vbkernels.storage import PartManifestWriter, open_store, put_summary, read_part_manifest

from . import gpu_input
from .clips import frame_numbers, select_frames, selected_count
from .device import BatchDecoder, resolve_device, same_shape_batches
from .manifest import ManifestRow, ManifestWriter, is_done, read_manifest, relative_output
from .outputs import check_output
from .runs import RunInfo, backend_used, summary_record, write_summary, written_by_run
from .sources import Source, frame_count, output_stem, read_frames, read_image
from .workers import PoolBroken, WorkerDied, WorkerPool

_SHUTDOWN_GRACE_S = 10.0  # how long running worker tasks get to finish after Ctrl-C
_POLL_S = 0.1             # how often the stop sequence looks for a second Ctrl-C


class DecodeFailed(RuntimeError):
    """The device decode itself failed (e.g. a backend that cannot run on this device):
    every batch would fail the same way, so the run stops."""


@dataclass
class InputState:
    source: Source
    frames_read: int = 0
    frames_written: int = 0
    frames_failed: int = 0
    reading: bool = True
    error: str | None = None
    outputs: list[str] = field(default_factory=list)
    finished: bool = False
    warned: bool = False  # its one warning (the first frame's that has one) was given

    @property
    def complete(self) -> bool:
        return not self.reading and self.frames_written + self.frames_failed == self.frames_read


@dataclass
class RunSummary:
    inputs: int = 0                  # inputs found
    frames: int = 0                  # frames written
    seconds: float = 0.0
    done: list[str] = field(default_factory=list)       # inputs finished in this run
    skipped: list[str] = field(default_factory=list)    # inputs whose outputs all existed
    failed: dict[str, str] = field(default_factory=dict)  # input -> first error
    unfinished: list[str] = field(default_factory=list)  # inputs Ctrl-C left incomplete
    interrupted: bool = False
    signal: int | None = None    # what interrupted it: signal.SIGINT or signal.SIGTERM
    worker_deaths: int = 0       # worker processes that died (each failed its one input)
    not_recorded: int = 0        # rows the manifest could not take (a full disk)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped ``decode_files``; ``summary`` says what was written."""

    def __init__(self, summary: RunSummary):
        super().__init__(f"interrupted after {summary.frames} frame(s)")
        self.summary = summary


class Terminated(KeyboardInterrupt):
    """SIGTERM in the main process during a run: stopped as Ctrl-C stops it."""


@dataclass
class PipelineOptions:
    kinds: tuple | str | None = None     # output kinds; None = the task's default
    device: str | torch.device = "auto"
    batch_size: int = 16
    workers: int | None = None            # None = one per core; 0 = no worker processes
    overwrite: bool = False
    keep_suffix: bool = False
    gpu_input: bool = True                # nvJPEG / NVDEC on CUDA when installed
    manifest: bool = True                 # False: write the outputs only (no manifest, no
    #                                       run summary)
    dry_run: bool = False                 # plan only: nothing is read, written or removed;
    #                                       the rows the plan would record are in
    #                                       ``LocalPipeline.planned_rows``
    # Images with more pixels are refused (a failed input): "pillow" = Pillow's own
    # decompression-bomb limit (2 x PIL.Image.MAX_IMAGE_PIXELS), an int, or None (none).
    max_pixels: int | str | None = "pillow"
    format: str = "files"                 # files | webdataset | parquet (vbkernels.storage)
    shard_size: int | str = "512MB"       # input bytes per shard (sharded formats)
    storage_options: dict | None = None   # object-store client options (--storage-option)
    frames: slice | None = None           # videos: the frames to decode (clips.parse_frames)


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# ------------------------------------------------------------------- worker-side calls


def single_threaded() -> None:
    """One compute thread in this (forked) process. Besides sparing the cores, it keeps
    OpenMP out of its thread pool: a fork has none of the parent's pool threads, and GNU
    libgomp waits for them forever in the next parallel region (torch bundles its own
    libgomp; the ``cpu`` backend uses the system one, so both are set)."""
    torch.set_num_threads(1)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libgomp.so.1").omp_set_num_threads(1)
        except (OSError, AttributeError):
            pass  # no system libgomp: nothing of ours uses it


def describe(exc: BaseException) -> str:
    """An exception as one line for an error message: its text, or its type when it has
    none (a ``MemoryError`` has no text)."""
    if isinstance(exc, MemoryError):
        return f"out of memory{': ' + str(exc) if str(exc) else ''} (MemoryError)"
    return str(exc) or type(exc).__name__


def _read_file_bytes(path: Path, max_pixels: int | str | None = "pillow") -> bytes:
    """A JPEG's bytes for nvJPEG, after the pixel limit is checked on its header (Pillow
    reads only the header to give the size)."""
    from .png import check_image_size

    check_image_size(path, max_pixels)
    return Path(path).read_bytes()


class ReadFailed(Exception):
    """``read_decode_write`` could not read its file (the message says why)."""


class DecodeFailedInWorker(Exception):
    """``read_decode_write``'s decode failed: the run stops, as a failed batch stops it."""


def read_decode_write(task, path: Path, stem: Path, kinds, store=None,
                      max_pixels: int | str | None = "pillow") -> list[Path]:
    """One image's whole chain in this (worker) process, on the CPU: the written paths."""
    try:
        rgb = read_image(path, max_pixels)
    except Exception as exc:  # noqa: BLE001 - any reader error is this file's failure
        raise ReadFailed(describe(exc)) from None
    try:
        outputs = BatchDecoder(task, torch.device("cpu")).submit([rgb]).result()
    except (RuntimeError, ValueError) as exc:
        raise DecodeFailedInWorker(str(exc)) from None
    return write_frame(task, {name: value[0] for name, value in outputs.items()}, stem, kinds,
                       store)


class Written(list):
    """The paths ``write_frame`` wrote, and ``warning``: the task's one-line warning about
    the frame (``Task.warning``: e.g. most pixels far from the encoding), or None."""

    warning: str | None = None


def write_frame(task, arrays: dict, stem: Path, kinds, store=None) -> Written:
    """Encode one frame's arrays and write each output atomically; the written paths.

    With an object ``store`` (``vbkernels.storage``), ``stem`` is relative to its root and
    each output is one whole-object put (nothing is committed if it fails).
    Outputs of an input that is being (re)done replace what is there: the decision to
    redo it was taken before any frame was read (see ``manifest.is_done``)."""
    written = Written()
    for suffix, data in task.encode(arrays, kinds).items():
        path = stem.with_name(stem.name + suffix)
        if store is None:
            write_atomic(path, data, overwrite=True)
        else:
            store.put(path.as_posix(), data)
        written.append(path)
    written.warning = task.warning(arrays)
    return written


class _InlineExecutor:
    """``workers=0``: the same calls, run at once in this process (no pool)."""

    def submit(self, fn, *args):
        future = cf.Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - delivered through the future, as a pool would
            future.set_exception(exc)
        return future

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def make_pool(workers: int, on_death=None):
    """A :class:`~.workers.WorkerPool` whose workers exist before any thread or CUDA
    context is created here (they are forked on Linux: no re-import of torch per worker);
    ``workers=0`` runs every call at once in this process."""
    if workers == 0:
        return _InlineExecutor()
    return WorkerPool(workers, initializer=single_threaded, on_death=on_death)


def _stop_pool(pool, futures) -> None:
    """Cancel queued work, let running tasks finish (at most ``_SHUTDOWN_GRACE_S``), then
    end every worker. A second Ctrl-C (or SIGTERM) meanwhile ends them at once: each
    removes its temporary file, so no partial output is left."""
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + _SHUTDOWN_GRACE_S
    with _signals_set(threading.Event()) as hurry:
        while (any(not f.done() for f in futures) and not hurry.is_set()
               and time.monotonic() < deadline):
            cf.wait([f for f in futures if not f.done()], timeout=_POLL_S)
        if any(not f.done() for f in futures) and hasattr(pool, "terminate"):
            pool.terminate()
        else:
            pool.shutdown(wait=True)


class _signals_set:  # noqa: N801 - used as a context manager, like a function
    """Within: SIGINT and SIGTERM set ``event`` instead of raising (the main thread only;
    elsewhere signals cannot be handled and nothing changes)."""

    def __init__(self, event: threading.Event):
        self.event = event
        self.saved: dict = {}

    def __enter__(self) -> threading.Event:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self.saved[number] = signal.signal(number, lambda *_: self.event.set())
        return self.event

    def __exit__(self, *exc):
        for number, handler in self.saved.items():
            signal.signal(number, handler)


def _raise_terminated(*_):
    raise Terminated("SIGTERM")


class OutputClaims:
    """Which input owns which output names, whatever the input kinds: an image owns its
    stem (``OUT/a`` -> ``OUT/a.depth.npy`` ...), a video its folder and every name in it
    (``OUT/clip/`` -> ``OUT/clip/000000.depth.npy`` ...). So ``clip.mp4`` and
    ``clip/000000.png`` in one input folder clash, as two ``a.png`` do."""

    def __init__(self):
        self._images: dict[Path, object] = {}   # image stem -> input
        self._videos: dict[Path, object] = {}   # video folder -> input
        self._under: dict[Path, object] = {}    # every folder above an image stem -> input

    def claim(self, source: Source, stem: Path):
        """Record ``source`` (first frame's output stem ``stem``); the input whose outputs
        it would overwrite, else None."""
        if source.kind == "video":
            folder = stem.parent
            owner = self._videos.get(folder, self._under.get(folder))
            if owner is None:
                self._videos[folder] = source.path
            return owner
        owner = self._images.get(stem)
        if owner is None:
            owner = next((self._videos[p] for p in stem.parents if p in self._videos), None)
        if owner is None:
            self._images[stem] = source.path
            for folder in stem.parents:
                self._under.setdefault(folder, source.path)
        return owner


# ------------------------------------------------------------------------ video thread


class _VideoReader:
    """Reads one video in a thread into a bounded queue (``None`` ends, an exception is
    passed through); ``stop()`` ends it at the next frame."""

    def __init__(self, frames: Iterator, depth: int):
        self._frames = frames
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="vbk-video")
        self._thread.start()

    def _run(self):
        try:
            for frame in self._frames:
                if not self._put(frame):
                    return
            self._put(None)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer as the input's error
            self._put(exc)
        finally:
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)


# ----------------------------------------------------------------------------- the run


class LocalPipeline:
    """One run of ``task`` over ``sources`` into ``outdir``; see the module docstring."""

    engine = "local"  # the manifest's and the run summary's name for this engine

    def __init__(self, task, outdir: Path, options: PipelineOptions,
                 on_error: Callable[[str, str], None] | None = None,
                 progress=None, on_warning: Callable[[str, str], None] | None = None):
        self.task = task
        self.options = options
        target = check_output(outdir)  # a local folder (Path) or an object-store URI (str)
        # An object store: outputs are named relative to its root (vbkernels.storage).
        self.store = (open_store(target, options.storage_options) if isinstance(target, str)
                      else None)
        self.outdir = target if self.store is None else Path(".")
        self.kinds = task.check_kinds(options.kinds)
        self.task = task.for_kinds(self.kinds)
        self.suffixes = task.suffixes(self.kinds)
        self.device = resolve_device(options.device)
        self.workers = default_workers() if options.workers is None else options.workers
        if options.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {options.batch_size}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        from .png import pixel_limit

        pixel_limit(options.max_pixels)  # a bad value fails here, not once per file
        self.read_ahead = max(2 * self.workers, options.batch_size)
        self.max_writes = max(2 * self.workers, 2)
        self.on_error = on_error or (lambda item, message: None)
        self.on_warning = on_warning or _warn
        self.progress = progress  # anything with update(n) (a tqdm bar), or None
        self.summary = RunSummary()
        self.run_info = RunInfo(self.engine, self._backend())
        self.planned_rows: list[ManifestRow] = []  # dry run: the rows the plan would write
        self._writes: deque = deque()  # (future, state)
        self._states: list[InputState] = []
        self._manifest: ManifestWriter | None = None
        self._video: _VideoReader | None = None
        self._stopping = False  # the run is being stopped: workers ended by it are not errors
        self._existing: dict | None = None  # an object store's listing, made by plan()

    # -- planning ---------------------------------------------------------------------

    def plan(self, sources: list[Source], input_errors=()) -> list[InputState]:
        """Fail clashing names and unreadable inputs, skip inputs that are done; the rest
        become the run's inputs (their stale outputs removed with ``overwrite``)."""
        self.summary.inputs = len(sources) + len(input_errors)
        for item, message in input_errors:
            self._fail_input(item, message)
        existing = None
        if self.store is not None:  # one listing for the whole resume decision
            existing = self.store.list() if sources else {}
            previous = {} if self.options.overwrite else read_part_manifest(self.store,
                                                                            existing)
        else:
            if self.outdir.is_dir():
                remove_stale_temporaries(self.outdir)  # left by writers killed in earlier runs
            previous = read_manifest(self.outdir) if not self.options.overwrite else {}
        self._existing = existing
        names = None if existing is None else set(existing)
        claims = OutputClaims()
        for source in sources:
            stem = output_stem(source, 0, self.outdir, keep_suffix=self.options.keep_suffix)
            owner = claims.claim(source, stem)
            if owner is not None:
                hint = "" if self.options.keep_suffix else "; --keep-suffix keeps them apart"
                self._fail_input(str(source.path), f"its outputs would overwrite those of "
                                 f"{owner} (same name{hint})")
                continue
            row = None if self.options.overwrite else is_done(
                source, self.suffixes, self.outdir, keep_suffix=self.options.keep_suffix,
                manifest=previous, existing=names)
            if row is not None:
                self.summary.skipped.append(str(source.path))
                self._record(row)
                continue
            if self.options.overwrite:
                self._remove_stale(source)
            self._states.append(InputState(source))
        return self._states

    def _remove_stale(self, source: Source) -> None:
        """With overwrite: this task's outputs of other kinds (an old preview) go."""
        if self.options.dry_run:
            return
        stale = [s for s in self.task.all_suffixes() if s not in self.suffixes]
        stem = output_stem(source, 0, self.outdir, keep_suffix=self.options.keep_suffix)
        if self.store is not None:
            folder = stem.parent.as_posix() + "/" if source.kind == "video" else None
            for key in self._existing or {}:
                if any(key.endswith(s) for s in stale) and (
                        key.startswith(folder) if folder else key in
                        {stem.as_posix() + s for s in stale}):
                    self.store.delete(key)
            return
        if source.kind == "video":
            candidates = [p for s in stale for p in stem.parent.glob(f"*{s}")]
        else:
            candidates = [stem.with_name(stem.name + s) for s in stale]
        for path in candidates:
            if path.is_file():
                path.unlink()

    # -- running ----------------------------------------------------------------------

    def pending_sources(self) -> list[Source]:
        """The planned inputs this run decodes (those neither skipped nor failed)."""
        return [state.source for state in self._states]

    def total_frames(self) -> int | None:
        counts = [selected_count(frame_count(s.source), self.options.frames)
                  if s.source.kind == "video" else frame_count(s.source) for s in self._states]
        return sum(counts) if all(c is not None for c in counts) else None

    def run(self) -> RunSummary:
        """Decode every planned input; Ctrl-C (``KeyboardInterrupt``) or SIGTERM ends the
        run cleanly with ``summary.interrupted`` and ``summary.signal`` set (the files in
        flight finish, nothing is half-written, every worker is gone)."""
        start = time.perf_counter()
        dead_workers: list[int] = []
        pool = make_pool(self.workers, lambda pid, task: dead_workers.append(pid)) \
            if self._states else None
        completed = False
        previous_term = _catch_sigterm()
        try:
            if pool is not None:
                self._run(pool)
            completed = True
        except KeyboardInterrupt as exc:
            self.summary.interrupted = True
            self.summary.signal = signal.SIGTERM if isinstance(exc, Terminated) \
                else signal.SIGINT
        finally:
            _restore_sigterm(previous_term)
            if self._video is not None:
                self._video.stop()
            if pool is not None:
                self._finish(pool, completed)
                self.summary.worker_deaths = getattr(pool, "deaths", 0)
            if dead_workers and self.store is None:  # killed mid-write: their temporary
                remove_stale_temporaries(self.outdir)    # files are still there
            self.summary.seconds = time.perf_counter() - start
            self._wrap_up()
        return self.summary

    def _run(self, pool) -> None:
        batched = self._states
        if self.device.type == "cpu" and self.workers > 0:
            self._run_images_in_workers(pool, [s for s in self._states
                                               if s.source.kind != "video"])
            batched = [s for s in self._states if s.source.kind == "video"]
        decoder = BatchDecoder(self.task, self.device)
        pending = None
        for batch in self._batches(pool, batched):
            try:
                started = (batch, decoder.submit([rgb for _, _, rgb in batch]))
            except (RuntimeError, ValueError) as exc:
                raise DecodeFailed(str(exc)) from None
            if pending is not None:
                self._dispatch(pool, *pending)
            pending = started
        if pending is not None:
            self._dispatch(pool, *pending)
        while self._writes:
            self._collect(block=True)

    def _run_images_in_workers(self, pool, states: list[InputState]) -> None:
        """CPU: one ``read_decode_write`` task per image, at most ``read_ahead`` queued."""
        for state in states:
            while len(self._writes) >= self.read_ahead:
                self._collect(block=True)
            stem = output_stem(state.source, 0, self.outdir, keep_suffix=self.options.keep_suffix)
            state.frames_read, state.reading = 1, False
            self._writes.append((pool.submit(read_decode_write, self.task, state.source.path,
                                             stem, self.kinds, self.store,
                                             self.options.max_pixels), state))
        while self._writes:
            self._collect(block=True)

    def _finish(self, pool, completed: bool) -> None:
        if completed:
            pool.shutdown(wait=True)
        else:  # Ctrl-C, SIGTERM or an error: stop now, keeping every finished file
            self._stopping = True
            _stop_pool(pool, [future for future, _ in self._writes])
        self._collect(block=False)  # writes that completed while stopping still count
        self.summary.unfinished = [str(s.source.path) for s in self._states if not s.finished]

    # -- read -------------------------------------------------------------------------

    def _frames(self, pool, states) -> Iterator[tuple[InputState, int, object]]:
        """(input, frame index, rgb) in input order; read failures are recorded here."""
        window: deque = deque()
        upcoming = iter(states)

        def fill():
            while len(window) < self.read_ahead:
                state = next(upcoming, None)
                if state is None:
                    return
                window.append((state, self._submit_read(pool, state)))

        fill()
        while window:
            state, future = window.popleft()
            fill()
            self._collect(block=False)
            try:
                if state.source.kind == "video":
                    numbers = frame_numbers(self.options.frames)
                    for index, rgb in zip(numbers, self._read_video(state)):
                        state.frames_read += 1
                        yield state, index, rgb
                else:
                    rgb = self._image_result(future)
                    state.frames_read = 1
                    yield state, 0, rgb
            except WorkerDied as exc:
                self._fail(state, str(exc))
            except PoolBroken as exc:
                raise DecodeFailed(str(exc)) from None
            except Exception as exc:  # noqa: BLE001 - any decoder error is one bad file
                self._fail(state, f"cannot read: {describe(exc)}")
            state.reading = False
            self._maybe_finish(state)

    def _submit_read(self, pool, state: InputState):
        source = state.source
        if source.kind == "video":
            return None  # read by a thread when its turn comes
        if gpu_input.on_device(source, self.device, self.options.gpu_input):
            return pool.submit(_read_file_bytes, source.path, self.options.max_pixels)
        return pool.submit(read_image, source.path, self.options.max_pixels)

    def _image_result(self, future):
        result = future.result()
        if isinstance(result, bytes):  # a JPEG for nvJPEG
            return gpu_input.decode_jpeg_bytes(result, self.device)
        return result

    def _read_video(self, state: InputState) -> Iterator:
        source = state.source
        if gpu_input.on_device(source, self.device, self.options.gpu_input):
            frames = gpu_input.video_frames_on(source.path, self.device)
        else:
            frames = read_frames(source)
        frames = select_frames(frames, self.options.frames)
        self._video = _VideoReader(frames, self.options.batch_size)
        try:
            yield from self._video
        finally:
            self._video.stop()
            self._video = None

    def _batches(self, pool, states) -> Iterator[list]:
        """Consecutive frames of one shape (and place), at most ``batch_size`` each."""
        return same_shape_batches(self._frames(pool, states), self.options.batch_size)

    # -- write ------------------------------------------------------------------------

    def _dispatch(self, pool, batch, pending) -> None:
        arrays = pending.result()
        for i, (state, index, _) in enumerate(batch):
            while len(self._writes) >= self.max_writes:
                self._collect(block=True)
            stem = output_stem(state.source, index, self.outdir,
                               keep_suffix=self.options.keep_suffix)
            frame = {name: value[i] for name, value in arrays.items()}
            self._writes.append((pool.submit(write_frame, self.task, frame, stem, self.kinds,
                                             self.store), state))

    def _collect(self, block: bool) -> None:
        """Account for finished writes (all of them that are done; with ``block``, wait
        for at least one first)."""
        if block and self._writes:
            cf.wait([f for f, _ in self._writes], return_when=cf.FIRST_COMPLETED)
        # Each finished write leaves the queue before it is counted: a Ctrl-C that lands
        # in the middle (a KeyboardInterrupt between two lines here) must not leave a
        # counted write queued, for the stop's last _collect would count it again.
        for item in [item for item in self._writes if item[0].done()]:
            self._writes.remove(item)
            future, state = item
            if future.cancelled():
                continue
            exc = future.exception()
            if isinstance(exc, WorkerDied) and self._stopping:
                continue  # ended by the stop itself (a second Ctrl-C): unfinished, not failed
            if isinstance(exc, DecodeFailedInWorker):
                raise DecodeFailed(str(exc))
            if isinstance(exc, PoolBroken):
                raise DecodeFailed(str(exc))
            if isinstance(exc, ReadFailed):
                state.frames_read = 0
                self._fail(state, f"cannot read: {exc}")
            elif exc is None:
                state.frames_written += 1
                state.outputs += [relative_output(p, self.outdir) for p in future.result()]
                self._warn_once(state, getattr(future.result(), "warning", None))
                self.summary.frames += 1
                if self.progress is not None:
                    self.progress.update(1)
            else:
                state.frames_failed += 1
                self._fail(state, str(exc) if isinstance(exc, WorkerDied)
                           else f"cannot write: {describe(exc)}")
            self._maybe_finish(state)

    # -- bookkeeping ------------------------------------------------------------------

    def _maybe_finish(self, state: InputState) -> None:
        if state.finished or not state.complete:
            return
        state.finished = True
        path = str(state.source.path)
        if state.error is None and state.frames_written == 0:
            self._fail(state, "no frames")
        if state.error is None:
            self.summary.done.append(path)
            self._record(ManifestRow(path, state.frames_written, sorted(state.outputs), "ok"))
        else:
            self._record(ManifestRow(path, state.frames_written, sorted(state.outputs),
                                     "failed", state.error))

    def _warn_once(self, state: InputState, warning: str | None) -> None:
        """One warning per input: a video's first frame that has one speaks for it."""
        if warning and not state.warned:
            state.warned = True
            self.on_warning(str(state.source.path), warning)

    def _fail(self, state: InputState, message: str) -> None:
        """The first error of a planned input (its row is written when it finishes)."""
        if state.error is None:
            state.error = message
            self.summary.failed[str(state.source.path)] = message
            self.on_error(str(state.source.path), message)

    def _fail_input(self, item: str, message: str) -> None:
        """An input that fails before it is read (missing, a name clash)."""
        self.summary.failed.setdefault(item, message)
        self.on_error(item, message)
        self._record(ManifestRow(item, 0, [], "failed", message))

    def _record(self, row: ManifestRow) -> None:
        """Append ``row`` to the manifest. A row it cannot take (a full disk) is reported
        and counted, and the run goes on: its outputs are whole, and an unrecorded input
        is redone or skipped on the next run by the resume rule."""
        row = self.run_info.stamp(row)
        if self.options.dry_run:
            self.planned_rows.append(row)
            return
        if not self.options.manifest:
            return
        try:
            if self._manifest is None:
                self._manifest = (ManifestWriter(self.outdir) if self.store is None
                                  else PartManifestWriter(self.store, run=self.run_info.run))
            self._manifest.append(row)
        except OSError as exc:
            self.summary.not_recorded += 1
            if self.summary.not_recorded == 1:
                where = (self.outdir / "manifest.jsonl" if self.store is None
                         else self.store.url("manifest/"))
                self.on_error(str(where), f"cannot record rows: {describe(exc)}")

    # -- the end of a run (every engine) ----------------------------------------------

    def _backend(self) -> str:
        """The backend the manifest names for this run's rows."""
        return backend_used(self.task, self.device)

    def _wrap_up(self) -> None:
        """After Ctrl-C, record the inputs whose outputs were all written; close the
        manifest; leave the run's summary (``vbkernels.pipeline.runs``)."""
        if self.summary.interrupted and self.store is None:  # (needs file times)
            self._record_written_inputs()
        if self._manifest is not None:
            self._manifest.close()
        if self.options.manifest and not self.options.dry_run:
            where = self.outdir if self.store is None else self.store.uri
            record = summary_record(self.run_info, self.summary, task=self.task,
                                    outdir=where, settings=self.settings())
            try:
                if self.store is None:
                    write_summary(record, self.outdir)
                elif self.summary.done or self.summary.failed:  # a rerun with nothing to do
                    put_summary(record, self.store)             # writes nothing to the store
            except OSError as exc:  # a full disk: the outputs and rows stand without it
                where = (self.outdir / "summary.json" if self.store is None
                         else self.store.url("summary.json"))
                self.on_error(str(where), f"cannot write the run summary: {describe(exc)}")

    def _record_written_inputs(self) -> None:
        """``ok`` rows for unfinished inputs whose every output this run wrote (a batch
        written by a worker, or a Ray actor, whose report never arrived): without them the
        rerun would call those inputs ``skipped`` and no row would say they were done."""
        unfinished = set(self.summary.unfinished)
        for state in self._states:
            path = str(state.source.path)
            if path not in unfinished or state.error is not None:
                continue
            written = written_by_run(state.source, self.outdir, self.suffixes,
                                     keep_suffix=self.options.keep_suffix,
                                     since=self.run_info.started_wall)
            if written is None:
                continue
            frames, outputs = written
            state.finished = True
            unfinished.discard(path)
            self.summary.done.append(path)
            self.summary.frames += max(0, frames - state.frames_written)
            self._record(ManifestRow(path, frames, outputs, "ok"))
        self.summary.unfinished = [p for p in self.summary.unfinished if p in unfinished]

    def settings(self) -> dict:
        """The options a run summary records (besides the task's own)."""
        options = dataclasses.asdict(self.options)
        for name in ("manifest", "dry_run"):
            options.pop(name)
        # Option names only: storage options may hold credentials.
        options["storage_options"] = sorted(options["storage_options"] or ())
        options["device"] = str(self.device)
        options["workers"] = self.workers
        options["kinds"] = list(self.kinds)
        return options


def _catch_sigterm():
    """SIGTERM stops a run as Ctrl-C does (schedulers send it before SIGKILL); the
    previous handler, or None where this is not the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _warn(item: str, message: str) -> None:
    """The default ``on_warning``: a Python warning naming the input, at the caller's line."""
    import warnings

    from vbkernels._checks import _caller_stacklevel

    warnings.warn(f"{item}: {message}", UserWarning, stacklevel=_caller_stacklevel())


def decode_files(inputs, task, output, *, on_error=None, progress=None, on_warning=None,
                 **options) -> RunSummary:
    """Decode ``inputs`` (paths, directories, globs) with ``task`` (a ``Task`` or a task
    name) into ``output`` on this machine; ``options`` are ``PipelineOptions`` fields plus,
    for a task name, ``build_task``'s options. ``on_warning(input, message)`` hears the one
    warning per input that does not look like the task's encoding (default:
    ``warnings.warn``). Returns the run's summary; Ctrl-C raises
    :class:`Interrupted` (a ``KeyboardInterrupt`` carrying the summary) after a clean stop."""
    from .sources import expand_inputs

    outdir = check_output(output)  # before anything is listed or read
    task, pipeline_options = split_options(task, options)
    sources, errors = expand_inputs(inputs)
    pipeline = make_pipeline(task, outdir, pipeline_options, on_error, progress, on_warning)
    pipeline.plan(sources, errors)
    summary = pipeline.run()
    if summary.interrupted:
        raise Interrupted(summary)
    return summary


def make_pipeline(task, output, options: PipelineOptions, on_error=None, progress=None,
                  on_warning=None):
    """The local engine for ``options.format``: per-frame files (``LocalPipeline``) or
    shards (``vbkernels.pipeline.sharded.ShardedPipeline``, which has no per-input
    warnings yet); ``output`` a folder or URI."""
    if options.format == "files":
        return LocalPipeline(task, output, options, on_error, progress, on_warning)
    from .sharded import ShardedPipeline

    return ShardedPipeline(task, output, options, on_error, progress)


def split_options(task, options: dict):
    """``(Task, PipelineOptions)`` from an engine's keyword options: ``PipelineOptions``
    fields, plus ``build_task`` options when ``task`` is a name (every engine takes both)."""
    from .tasks import build_task

    fields = set(PipelineOptions.__dataclass_fields__)
    pipeline_options = PipelineOptions(**{k: v for k, v in options.items() if k in fields})
    task_options = {k: v for k, v in options.items() if k not in fields}
    if isinstance(task, str):
        task = build_task(task, **task_options)
    elif task_options:
        raise TypeError(f"unknown options {sorted(task_options)} (task already built)")
    return task.for_kinds(pipeline_options.kinds), pipeline_options
