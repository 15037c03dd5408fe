"""The local engine for sharded outputs (``--format webdataset|parquet``).

The unit of work is a shard (``vbkernels.storage.shards``): plan the inputs still to do
into shards, then each worker process decodes, encodes and puts one whole shard and its
commit record (on a GPU the main process decodes the shards one after another on the
device). Resume lists the commit records once; inputs with an ``ok`` row in one are
skipped, everything else is planned again. The manifest of a sharded output is the union
of the commit records' rows (no ``manifest.jsonl``, no manifest parts).
"""

from __future__ import annotations

import concurrent.futures as cf
import time

from vbkernels.storage import open_store
from vbkernels.storage.shards import (
    SHARDS_PREFIX,
    committed_rows,
    input_sizes,
    parse_size,
    plan_shards,
    read_records,
    write_shard,
)

from .device import BatchDecoder, resolve_device
from .local import PipelineOptions, RunSummary, _stop_pool, default_workers, make_pool
from .manifest import ManifestRow, input_key
from .sources import frame_count


def write_shard_job(task, plan, store, kinds, batch_size: int, keep_suffix: bool,
                    device="cpu", before_commit=None):
    """One shard in this process (a pool worker, a Ray task): its manifest rows."""
    decoder = BatchDecoder(task, resolve_device(device))
    return write_shard(task, plan, store, kinds, decoder=decoder, batch_size=batch_size,
                       keep_suffix=keep_suffix, before_commit=before_commit)


def _has_video(plan) -> bool:
    return any(source.kind == "video" for source in plan.sources)


class ShardedPipeline:
    """One sharded run of ``task`` over ``sources`` into ``output`` (a folder or URI)."""

    def __init__(self, task, output, options: PipelineOptions, on_error=None, progress=None):
        self.task = task
        self.options = options
        self.store = open_store(output, options.storage_options)
        self.kinds = task.check_kinds(options.kinds)
        self.shard_size = parse_size(options.shard_size)
        self.device = resolve_device(options.device)
        self.workers = default_workers() if options.workers is None else options.workers
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        self.on_error = on_error or (lambda item, message: None)
        self.progress = progress
        self.summary = RunSummary()
        self.plans: list = []
        self.planned_rows: list = []  # --dry-run: the inputs skipped (nothing else is known)
        self.before_commit = None  # fault injection for tests: called between the two puts

    def plan(self, sources, input_errors=(), sizes: dict | None = None) -> list:
        """Skip inputs done in a committed shard (unless ``overwrite``), plan the rest.
        ``sizes`` (input key -> bytes) for inputs whose size the caller listed."""
        self.summary.inputs = len(sources) + len(input_errors)
        for item, message in input_errors:
            self.summary.failed.setdefault(item, message)
            self.on_error(item, message)
        records = read_records(self.store, self.store.list(SHARDS_PREFIX))
        done = {} if self.options.overwrite else committed_rows(records)
        to_do = []
        for source in sources:
            if input_key(source.path) in done:
                self.summary.skipped.append(str(source.path))
                self.planned_rows.append(ManifestRow(str(source.path), done[
                    input_key(source.path)].frames, [], "skipped"))
            else:
                to_do.append(source)
        sizes = {**input_sizes(to_do), **(sizes or {})}
        self.plans = plan_shards(self.task, self.kinds, self.options.format, to_do, sizes,
                                 self.shard_size)
        if self.options.overwrite and not self.options.dry_run:
            self._retire(records, {input_key(s.path) for s in to_do})
        return self.plans

    def _retire(self, records: dict, redone: set) -> None:
        """With ``overwrite``: committed shards holding an input this run redoes, under
        another name than the new plan's, are removed (record first, so readers never see
        a record without its data), or readers would get those frames twice."""
        keep = {plan.id for plan in self.plans}
        for shard, record in sorted(records.items()):
            if shard in keep or not any(input_key(row["path"]) in redone
                                        for row in record["rows"]):
                continue
            self.store.delete(f"{SHARDS_PREFIX}{shard}.json")
            if record["data"]:
                self.store.delete(record["data"])

    def pending_sources(self) -> list:
        """The inputs this run decodes, shard by shard."""
        return [source for plan in self.plans for source in plan.sources]

    def total_frames(self) -> int | None:
        counts = [frame_count(s) for plan in self.plans for s in plan.sources]
        return sum(counts) if all(c is not None for c in counts) else None

    def job_arguments(self, plan) -> tuple:
        return (self.task, plan, self.store, self.kinds, self.options.batch_size,
                self.options.keep_suffix)

    def run(self) -> RunSummary:
        start = time.perf_counter()
        if self.options.dry_run:
            return self.summary
        try:
            if self.device.type == "cpu" and self.workers > 0 and len(self.plans) > 1:
                self._run_in_pool()
            else:
                for plan in self.plans:
                    self._write_here(plan)
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            self.summary.seconds = time.perf_counter() - start
        return self.summary

    def _run_in_pool(self) -> None:
        """Image shards in the worker processes; video shards in this process meanwhile,
        as the files layout reads videos: FFmpeg's decoding threads can hang for ever in a
        forked worker (seen here: a child stuck in its first ``decode``)."""
        images = [plan for plan in self.plans if not _has_video(plan)]
        videos = [plan for plan in self.plans if _has_video(plan)]
        pool = make_pool(min(self.workers, len(images))) if images else None
        futures = {}
        try:
            for plan in images:
                futures[pool.submit(write_shard_job, *self.job_arguments(plan), "cpu",
                                    self.before_commit)] = plan
            for plan in videos:
                self._write_here(plan)
            for future in cf.as_completed(futures):
                self._collect(futures[future], future)
        except BaseException:
            if pool is not None:
                _stop_pool(pool, list(futures))
            raise
        if pool is not None:
            pool.shutdown(wait=True)

    def _write_here(self, plan) -> None:
        """One shard in this process, on this run's device."""
        try:
            rows = write_shard_job(*self.job_arguments(plan), device=self.device,
                                   before_commit=self.before_commit)
        except Exception as exc:  # noqa: BLE001 - this shard is not written
            self.shard_failed(plan, f"cannot write shard {plan.id}: {exc}")
            return
        self.report(plan, rows)

    def _collect(self, plan, future) -> None:
        try:
            rows = future.result()
        except Exception as exc:  # noqa: BLE001 - a shard that could not be written
            self.shard_failed(plan, f"cannot write shard {plan.id}: {exc}")
            return
        self.report(plan, rows)

    def shard_failed(self, plan, message: str) -> None:
        for source in plan.sources:
            self.summary.failed[str(source.path)] = message
            self.on_error(str(source.path), message)
        self.summary.unfinished += [str(s.path) for s in plan.sources]

    def report(self, plan, rows) -> None:
        """Account for a committed shard's manifest rows."""
        for row in rows:
            if row.status == "ok":
                self.summary.done.append(row.path)
                self.summary.frames += row.frames
                if self.progress is not None:
                    self.progress.update(row.frames)
            else:
                self.summary.failed[row.path] = row.error
                self.on_error(row.path, row.error)



