"""What one invocation of an engine was: its id, its summary file, and the check that finds
inputs an interrupted run finished without recording them.

Every run (``decode_files``, ``vbkernels decode``) gets an id, ``YYYYmmddTHHMMSSZ-xxxxxx``
(its UTC start and 6 random hex digits: sortable by time, unique across machines). Each
manifest row it writes carries the id, the row's time, the engine and the backend. At the
end (also after Ctrl-C) the run writes ``OUT/runs/<run>.json`` and the same JSON as
``OUT/summary.json`` (the latest run): counts, seconds, frames/s and the settings.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import secrets
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vbkernels.files import write_atomic

from .manifest import frame_outputs, relative_output
from .sources import Source, frame_count

SUMMARY_NAME = "summary.json"
RUNS_DIR = "runs"

# The op that stands for each task when the manifest names the backend that decoded it.
_TASK_OPS = {"depth": "decode_depth", "normals": "decode_normals",
             "seg": "decode_segmentation", "colormap": "decode_colormap",
             "instances": "colour_histogram"}

# File-system timestamps come from a coarse clock that can lag time.time() by a tick, and
# nodes of a cluster writing to one share disagree by a little: an output counts as written
# by this run when it is no older than the run's start minus this.
_CLOCK_SLACK_S = 1.0


def utc_now() -> str:
    """Now, ISO 8601 UTC to the millisecond (``2026-12-07T20:01:02.123+00:00``)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


@dataclasses.dataclass
class RunInfo:
    """The fields every manifest row of a run shares, and when the run started."""

    engine: str
    backend: str
    run: str = dataclasses.field(default_factory=new_run_id)
    started: str = dataclasses.field(default_factory=utc_now)
    started_wall: float = dataclasses.field(default_factory=time.time)

    def stamp(self, row):
        """``row`` with this run's id, engine and the time now; its own backend kept when
        it has one (a Ray actor reports the backend it resolved on its device)."""
        return dataclasses.replace(row, run=self.run, time=utc_now(), engine=self.engine,
                                   backend=row.backend or self.backend)


def backend_used(task, device) -> str:
    """The backend ``task`` decodes with on ``device``: ``task.backend`` resolved
    (``auto`` -> ``cpu``, ``triton`` ...), or as asked when it cannot run there (the
    decode then fails and says why)."""
    from vbkernels._dispatch import select

    op = _TASK_OPS.get(task.name)
    if op is None:
        return task.backend
    try:
        chosen, _ = select(op, task.backend, torch.device(device), torch.uint8)
    except (RuntimeError, ValueError, TypeError):
        return task.backend
    return chosen.name


# ----------------------------------------------------------------- interrupted runs


def written_by_run(source: Source, outdir: Path, suffixes, *, keep_suffix: bool,
                   since: float) -> tuple[int, list[str]] | None:
    """``(frames, outputs)`` when every output of ``source`` is on disk and was written
    since ``since`` (``time.time()`` at the run's start), else None. A video counts when
    its container states its frame count and every frame's outputs are there; one whose
    count is unknown is left for the rerun to redo."""
    frames = 1 if source.kind == "image" else frame_count(source)
    if not frames:
        return None
    files = [f for index in range(frames)
             for f in frame_outputs(source, index, outdir, suffixes, keep_suffix=keep_suffix)]
    oldest = since - _CLOCK_SLACK_S
    for path in files:
        try:
            if path.stat().st_mtime < oldest:
                return None
        except OSError:
            return None
    return frames, sorted(relative_output(f, outdir) for f in files)


# ---------------------------------------------------------------------- summaries


def summary_record(info: RunInfo, summary, *, task, outdir: Path, settings: dict) -> dict:
    """The JSON a run leaves behind (see the module docstring)."""
    rate = summary.frames / summary.seconds if summary.seconds > 0 else 0.0
    return {
        "run": info.run,
        "engine": info.engine,
        "backend": info.backend,
        "started": info.started,
        "finished": utc_now(),
        "seconds": round(summary.seconds, 3),
        "frames": summary.frames,
        "frames_per_s": round(rate, 3),
        "interrupted": summary.interrupted,
        "inputs": summary.inputs,
        "done": len(summary.done),
        "skipped": len(summary.skipped),
        "failed": len(summary.failed),
        "unfinished": len(summary.unfinished),
        "task": task.name,
        "output": str(outdir),
        "settings": _jsonable({**_task_settings(task), **settings}),
        "command": sys.argv,
        "versions": _versions(),
    }


def write_summary(record: dict, outdir: Path) -> Path:
    """``OUT/runs/<run>.json`` and ``OUT/summary.json`` (each written atomically); the
    path of the first."""
    data = (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    path = Path(outdir) / RUNS_DIR / f"{record['run']}.json"
    write_atomic(path, data, overwrite=True)
    write_atomic(Path(outdir) / SUMMARY_NAME, data, overwrite=True)
    return path


def _task_settings(task) -> dict:
    return {f.name: getattr(task, f.name) for f in dataclasses.fields(task)}


def _jsonable(value):
    """Settings as JSON: arrays and tensors by shape (a palette's colours are in its
    file), objects with a ``name`` by name, anything else unknown as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return f"array{tuple(value.shape)}"
    if isinstance(value, torch.device):
        return str(value)
    name = getattr(value, "name", None)
    return name if isinstance(name, str) else str(value)


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0], "torch": torch.__version__}
    try:
        found["vbkernels"] = version("vbkernels")
    except PackageNotFoundError:
        pass
    return found
