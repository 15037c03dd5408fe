"""The manifest on an object store: part objects ``manifest/part-<run>-<seq>.jsonl``.

Objects cannot be appended to, so each run writes its rows in parts of its own (a part
when ``rows_per_part`` rows are waiting or ``seconds_per_part`` have passed, and at the
end). ``<run>`` starts with the run's UTC start time, so part names sort oldest first; the
manifest is the union of every part, and for each input the newest row wins, as in
``manifest.jsonl``. Rows with status ``skipped`` are not written here: on a rerun that finds
everything done the store is not written to at all (its earlier ``ok`` rows still say what
was written). On POSIX folders ``manifest.jsonl`` is used as before.
"""

from __future__ import annotations

import json
import time
import uuid

PARTS_PREFIX = "manifest/part-"


def new_run_id() -> str:
    """``20261207T195301Z-1a2b3c4d``: sorts by start time, unique per run."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


class PartManifestWriter:
    """Collects a run's rows and puts them as part objects (see the module docstring)."""

    def __init__(self, store, run: str | None = None, rows_per_part: int = 1000,
                 seconds_per_part: float = 60.0):
        self.store = store
        self.run = run or new_run_id()
        self.rows_per_part = rows_per_part
        self.seconds_per_part = seconds_per_part
        self.parts: list[str] = []
        self._rows: list[str] = []
        self._since = time.monotonic()

    def append(self, row) -> None:
        """Queue a ``vbkernels.pipeline.ManifestRow`` (skipped rows are dropped)."""
        if row.status == "skipped":
            return
        self._rows.append(row.to_json())
        if (len(self._rows) >= self.rows_per_part
                or time.monotonic() - self._since >= self.seconds_per_part):
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        key = f"{PARTS_PREFIX}{self.run}-{len(self.parts):06d}.jsonl"
        self.store.put(key, ("\n".join(self._rows) + "\n").encode("utf-8"))
        self.parts.append(key)
        self._rows = []
        self._since = time.monotonic()

    def close(self) -> None:
        self.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_part_manifest(store, listing: dict[str, int] | None = None) -> dict:
    """The newest ``ok``/``skipped`` ``ManifestRow`` per input key over every part (a
    listing made already, ``store.list()``, saves listing again); unreadable lines are
    ignored."""
    # Imported here: vbkernels.pipeline imports this module.
    from vbkernels.pipeline.manifest import ManifestRow, input_key

    listing = store.list(PARTS_PREFIX) if listing is None else listing
    latest: dict[str, ManifestRow] = {}
    for key in sorted(k for k in listing if k.startswith(PARTS_PREFIX)):
        for line in store.get(key).decode("utf-8", errors="replace").splitlines():
            try:
                row = ManifestRow(**json.loads(line))
            except (ValueError, TypeError):
                continue
            if row.status in ("ok", "skipped"):
                latest[input_key(row.path)] = row
    return latest


def put_summary(record: dict, store) -> str:
    """A run's summary on an object store: ``runs/<run>.json`` and ``summary.json`` (the
    latest run), as ``vbkernels.pipeline.runs.write_summary`` writes them to a folder."""
    data = (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    key = f"runs/{record['run']}.json"
    store.put(key, data)
    store.put("summary.json", data)
    return key
