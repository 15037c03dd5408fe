"""``OUT/manifest.jsonl``: one JSON line per input and run, and the resume rule.

Row fields: ``path`` (the input as given), ``frames`` (frames written), ``outputs`` (every
output file written for it, relative to OUT, POSIX separators), ``status`` (``ok``,
``failed`` or ``skipped``) and ``error`` (text, null unless failed). Reruns append: the
newest row for an input is the one that counts.

Each row goes to the file in one ``write`` on a descriptor opened with ``O_APPEND`` and is
on disk (flushed, not fsynced) before the next; on a local POSIX file system the kernel
appends each write whole, so several processes (local workers, Ray actors on one machine)
may append to one manifest without interleaving lines. Network file systems (NFS) do not
promise that; give each machine its own manifest there.

Rows are whole or absent: a write cut short (a full disk) is cut back off the file, and a
writer that finds the file ending without a newline (a torn row left by a crash) starts on
a new line, so its first row is never glued onto the torn one. ``read_manifest`` skips a
torn or foreign line, with a warning for a torn last line.

Paths that are not valid UTF-8 (Linux file names are bytes) are recorded losslessly: such a
row is written with ``\\udcXX`` escapes, Python's ``surrogateescape`` form of each bad
byte, which ``json.loads`` gives back exactly (``os.fsencode(row["path"])`` is the original
name); every other row keeps its non-ASCII characters as they are.

The resume rule (``is_done``): an input is skipped iff ALL its outputs exist. For an image
those are the outputs of its one frame. A video's frame count is not known cheaply, so it is
done iff its newest ``ok``/``skipped`` row lists every output the current output choice
asks for (for as many frames as that row has) and all of them exist. An input with only
some outputs (a run stopped mid-way) is redone and its partial outputs replaced.
"""

from __future__ import annotations

import errno
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .sources import Source, output_stem

MANIFEST_NAME = "manifest.jsonl"
STATUSES = ("ok", "failed", "skipped")


@dataclass
class ManifestRow:
    path: str
    frames: int = 0
    outputs: list[str] = field(default_factory=list)
    status: str = "ok"
    error: str | None = None

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def to_json(self) -> str:
        """One JSON line (no newline). Non-ASCII text stays as it is, except in a row
        holding a surrogate-escaped (non-UTF-8) name: that row is all ``\\u`` escapes, so
        the line is still UTF-8 and ``json.loads`` returns the same strings."""
        text = json.dumps(asdict(self), ensure_ascii=False)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(asdict(self), ensure_ascii=True)
        return text


class ManifestWriter:
    """Appends rows to ``OUT/manifest.jsonl`` (created when missing), one write per row;
    each row is on the file whole or not at all (see the module docstring)."""

    def __init__(self, outdir: Path):
        self.path = Path(outdir) / MANIFEST_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self._start_on_a_new_line()

    def _start_on_a_new_line(self) -> None:
        """A file ending without a newline holds a torn row: end it, so the torn row stays
        one bad line and this writer's first row is read."""
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            self._write(b"\n")

    def append(self, row: ManifestRow) -> None:
        self._write((row.to_json() + "\n").encode("utf-8"))

    def _write(self, data: bytes) -> None:
        written = os.write(self._fd, data)
        if written != len(data):  # a full disk: take the partial row back off the file
            end = os.lseek(self._fd, 0, os.SEEK_CUR)  # O_APPEND: the end of our write
            if os.fstat(self._fd).st_size == end:  # nobody appended since
                os.ftruncate(self._fd, end - written)
            raise OSError(errno.ENOSPC, f"short write to {self.path} ({written} of "
                          f"{len(data)} bytes; the row was not recorded)")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_manifest(outdir: Path) -> dict[str, ManifestRow]:
    """The newest ``ok``/``skipped`` row per input key (see ``input_key``). A foreign or
    undecodable line is ignored; a last line without its newline (a row torn by a crash or
    a full disk) is ignored with a ``RuntimeWarning``."""
    path = Path(outdir) / MANIFEST_NAME
    latest: dict[str, ManifestRow] = {}
    if not path.exists():
        return latest
    with open(path, "rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                warnings.warn(f"{path}: the last line has no newline (a row torn by a crash "
                              "or a full disk); it is ignored", RuntimeWarning, stacklevel=2)
                break
            row = _parse_row(line)
            if row is not None and row.status in ("ok", "skipped"):
                latest[input_key(row.path)] = row
    return latest


def _parse_row(line: bytes) -> ManifestRow | None:
    try:
        fields = json.loads(line)
        return ManifestRow(**fields) if isinstance(fields, dict) else None
    except (ValueError, TypeError):  # UnicodeDecodeError is a ValueError
        return None


def input_key(path) -> str:
    """How rows are matched to inputs: the absolute path for local files, the URI as is
    for anything with a scheme (``s3://...``)."""
    text = str(path)
    return text if "://" in text else os.path.abspath(text)


def relative_output(path: Path, outdir: Path) -> str:
    return Path(path).relative_to(outdir).as_posix()


def frame_outputs(source: Source, index: int, outdir: Path, suffixes, *,
                  keep_suffix: bool = False) -> list[Path]:
    """The files frame ``index`` of ``source`` is written to."""
    stem = output_stem(source, index, outdir, keep_suffix=keep_suffix)
    return [stem.with_name(stem.name + suffix) for suffix in suffixes]


def is_done(source: Source, suffixes, outdir: Path, *, keep_suffix: bool = False,
            manifest: dict[str, ManifestRow] | None = None) -> ManifestRow | None:
    """The row a rerun records for ``source`` when ALL its outputs exist, else None.

    ``manifest`` is ``read_manifest(outdir)`` (read once per run); videos need it.
    """
    outdir = Path(outdir)
    if source.kind == "image":
        files = frame_outputs(source, 0, outdir, suffixes, keep_suffix=keep_suffix)
        if not all(f.exists() for f in files):
            return None
        return ManifestRow(str(source.path), 1, [relative_output(f, outdir) for f in files],
                           "skipped")
    previous = (manifest or {}).get(input_key(source.path))
    if previous is None or previous.frames < 1:
        return None
    wanted = [relative_output(f, outdir) for i in range(previous.frames)
              for f in frame_outputs(source, i, outdir, suffixes, keep_suffix=keep_suffix)]
    if not set(wanted) <= set(previous.outputs):
        return None
    if not all((outdir / name).exists() for name in wanted):
        return None
    return ManifestRow(str(source.path), previous.frames, wanted, "skipped")
