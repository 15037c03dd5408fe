"""Sharded outputs: many frames per object, WebDataset tars or Parquet files, each made
visible by a commit record.

Plan (``plan_shards``): the inputs still to do, sorted by their key, go into shards of
about ``shard_size`` bytes *of input* (the one size the driver knows without reading a
pixel: a 1080p depth PNG of 3.1 MB gives 8.3 MB of float32 ``.npy``, 4.1 MB in float16); a
video is a shard of its own. A shard's id is a hash of the task and its options, the
output kinds, dtype and format, and the sorted input keys, so a retried or rerun shard has
the same name and the same bytes (sorted members, fixed mtimes, no random keys).

Write (``write_shard``): every frame of the shard is decoded and encoded in memory, the
shard is put whole (``Store.put``: one request, or a multipart upload aborted on error),
and only then its commit record ``shards/<id>.json`` (the data object's name, size and
SHA-256, the members, the manifest rows). A shard without its record does not exist for
readers or for resume; resume lists the records, keeps the inputs with an ``ok`` row in
one, and plans everything else into shards anew (so failed inputs go into new shards).

Formats:

- ``webdataset``: ``shards/<id>.tar``, an uncompressed tar written by ``webdataset``'s
  ``TarWriter`` (mtime 0). Frame n of the shard has the dot-free key ``f"{n:09d}"`` and the
  members ``<key>.json`` (input path, frame index, output name, task and settings) plus one
  member per output, ``<key><suffix>`` with the same bytes as the ``files`` layout's
  ``NAME<suffix>`` (``000000003.depth.npy``, ``000000003.depth.png``).
- ``parquet``: ``shards/<id>.parquet``, zstd, 16-64 frames per row group; metadata columns
  ``key, path, frame, name, meta`` (the ``.json`` member's text) and one column per output:
  each ``.npy`` output as a standard ``arrow.fixed_shape_tensor`` column when every frame of
  the shard has one shape (``depth``, ``normals``, ``labels``...) else its ``.npy`` bytes
  (``depth_npy``), every other output as bytes (``depth_png``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import re
from pathlib import Path, PurePosixPath

import numpy as np

from vbkernels.pipeline.manifest import ManifestRow, input_key
from vbkernels.pipeline.sources import Source, frames_from_bytes, output_stem, read_frames

FORMATS = ("files", "webdataset", "parquet")
SHARD_FORMATS = ("webdataset", "parquet")
SHARDS_PREFIX = "shards/"
EXTENSIONS = {"webdataset": ".tar", "parquet": ".parquet"}
DEFAULT_SHARD_SIZE = 512 * 10**6
LAYOUT_VERSION = 1  # part of every shard id: a change of layout gives new names
_ROW_GROUP_BYTES = 64 << 20


def parse_size(text) -> int:
    """``512MB``, ``1.5GB``, ``64MiB``, ``1000`` (bytes) -> bytes."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        size = int(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?i?b?)?\s*", str(text), re.I)
        if not match:
            raise ValueError(f"shard size must be a size like 512MB or 1GiB, got {text!r}")
        unit = (match.group(2) or "b").lower().rstrip("b")
        scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
                 "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}[unit]
        size = int(float(match.group(1)) * scale)
    if size < 1:
        raise ValueError(f"shard size must be at least 1 byte, got {text!r}")
    return size


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """One shard to write: its id, format and inputs (in order)."""

    id: str
    format: str
    sources: tuple

    @property
    def data_key(self) -> str:
        return f"{SHARDS_PREFIX}{self.id}{EXTENSIONS[self.format]}"

    @property
    def record_key(self) -> str:
        return f"{SHARDS_PREFIX}{self.id}.json"


def canonical(value):
    """A JSON-able, deterministic form of task options (tensors and arrays as lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def settings(task, kinds, fmt: str) -> dict:
    """What a shard's bytes depend on besides its inputs (hashed into its id)."""
    return {"version": LAYOUT_VERSION, "task": task.name, "options": canonical(task),
            "kinds": list(kinds), "format": fmt}


def shard_id(task, kinds, fmt: str, keys) -> str:
    text = json.dumps({"settings": settings(task, kinds, fmt), "inputs": sorted(keys)},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def plan_shards(task, kinds, fmt: str, sources, sizes: dict | None = None,
                shard_size: int = DEFAULT_SHARD_SIZE) -> list[ShardPlan]:
    """Shards for ``sources``: sorted by input key, images packed until their input bytes
    (``sizes``: input key -> bytes; unknown sizes count as ``shard_size``: one a shard)
    reach ``shard_size``; each video alone."""
    if fmt not in SHARD_FORMATS:
        raise ValueError(f"format must be one of {', '.join(SHARD_FORMATS)}, got {fmt!r}")
    sizes = sizes or {}
    groups, current, current_bytes = [], [], 0
    for source in sorted(sources, key=lambda s: input_key(s.path)):
        if source.kind == "video":
            groups.append([source])
            continue
        size = sizes.get(input_key(source.path), shard_size)
        if current and current_bytes + size > shard_size:
            groups.append(current)
            current, current_bytes = [], 0
        current.append(source)
        current_bytes += size
    if current:
        groups.append(current)
    return [ShardPlan(shard_id(task, kinds, fmt, [input_key(s.path) for s in group]), fmt,
                      tuple(group)) for group in groups]


def input_sizes(sources) -> dict:
    """Input key -> bytes for local files (URIs: the engine lists them with sizes)."""
    sizes = {}
    for source in sources:
        if "://" not in str(source.path):
            try:
                sizes[input_key(source.path)] = Path(source.path).stat().st_size
            except OSError:
                pass
    return sizes


# ----------------------------------------------------------------------- commit records


def read_records(store, listing: dict | None = None) -> dict[str, dict]:
    """Committed shards: ``{id: record}`` from every ``shards/<id>.json``."""
    listing = store.list(SHARDS_PREFIX) if listing is None else listing
    records = {}
    for key in sorted(k for k in listing if k.startswith(SHARDS_PREFIX) and k.endswith(".json")):
        record = json.loads(store.get(key))
        records[record["id"]] = record
    return records


def committed_rows(records: dict[str, dict]) -> dict[str, ManifestRow]:
    """The ``ok`` row per input key over all committed shards (its inputs are done)."""
    done = {}
    for record in records.values():
        for row in record["rows"]:
            if row["status"] == "ok":
                done[input_key(row["path"])] = ManifestRow(**row)
    return done


# ------------------------------------------------------------------------------ writing


def _frames(source: Source):
    """(H, W, 3) uint8 frames of a local file or of a URI (read whole through pyarrow)."""
    if "://" not in str(source.path):
        return read_frames(source)
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(str(source.path))
    with filesystem.open_input_file(path) as handle:
        data = handle.readall()
    return frames_from_bytes(data, str(source.path))


def decode_shard(task, plan: ShardPlan, kinds, *, decoder, batch_size: int = 16,
                 keep_suffix: bool = False):
    """Decode and encode every frame of ``plan``: (members, rows). ``members`` is a list of
    (key, {suffix: bytes}, meta) per frame written; ``rows`` one manifest row per input (a
    file that cannot be read is a ``failed`` row; its frames before the failure are kept
    out, so an input is in the shard whole or not at all)."""
    from vbkernels.pipeline.device import same_shape_batches

    members, rows = [], []
    base = settings(task, kinds, plan.format)
    for source in plan.sources:
        frames_out = []
        try:
            items = ((source, index, rgb) for index, rgb in enumerate(_frames(source)))
            for batch in same_shape_batches(items, batch_size):
                arrays = decoder.submit([rgb for _, _, rgb in batch]).result()
                for i, (_, index, _) in enumerate(batch):
                    frame = {name: value[i] for name, value in arrays.items()}
                    name = output_stem(source, index, PurePosixPath(""), keep_suffix=keep_suffix)
                    meta = {"path": str(source.path), "frame": index,
                            "name": PurePosixPath(name).as_posix(), **base}
                    frames_out.append((task.encode(frame, kinds), meta))
        except Exception as exc:  # noqa: BLE001 - one unreadable input is one failed row
            rows.append(ManifestRow(str(source.path), 0, [], "failed",
                                    f"{type(exc).__name__}: {exc}"))
            continue
        if not frames_out:
            rows.append(ManifestRow(str(source.path), 0, [], "failed", "no frames"))
            continue
        names = []
        for encoded, meta in frames_out:
            key = f"{len(members):09d}"
            members.append((key, encoded, meta))
            names += [key + ".json"] + [key + suffix for suffix in encoded]
        rows.append(ManifestRow(str(source.path), len(frames_out), sorted(names), "ok"))
    return members, rows


def webdataset_bytes(members) -> bytes:
    """The shard as an uncompressed tar (``webdataset.TarWriter``, mtime 0, sorted)."""
    import webdataset as wds

    buffer = io.BytesIO()
    writer = wds.TarWriter(buffer, encoder=False, mtime=0.0, user="", group="", mode=0o444)
    for key, encoded, meta in members:
        sample = {"__key__": key, "json": _json_bytes(meta)}
        sample.update({suffix.lstrip("."): data for suffix, data in encoded.items()})
        writer.write(sample)
    writer.close()
    return buffer.getvalue()


def _json_bytes(meta: dict) -> bytes:
    return json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8")


def column_name(suffix: str) -> str:
    """``.depth.npy`` -> ``depth``; ``.colormap.distance.npy`` -> ``colormap_distance``;
    ``.depth.png`` -> ``depth_png``."""
    name = suffix.lstrip(".")
    name = name[:-4] if name.endswith(".npy") else name
    return name.replace(".", "_")


def parquet_bytes(members) -> bytes:
    """The shard as one Parquet file (zstd, 16-64 frames per row group)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"key": pa.array([k for k, _, _ in members], pa.string()),
               "path": pa.array([m["path"] for _, _, m in members], pa.string()),
               "frame": pa.array([m["frame"] for _, _, m in members], pa.int32()),
               "name": pa.array([m["name"] for _, _, m in members], pa.string()),
               "meta": pa.array([_json_bytes(m).decode("utf-8") for _, _, m in members],
                                pa.string())}
    frame_bytes = 1
    for suffix in members[0][1]:
        blobs = [encoded[suffix] for _, encoded, _ in members]
        if not suffix.endswith(".npy"):
            columns[column_name(suffix)] = pa.array(blobs, pa.binary())
            continue
        arrays = [np.load(io.BytesIO(blob), allow_pickle=False) for blob in blobs]
        frame_bytes += arrays[0].nbytes
        if len({(a.shape, a.dtype.str) for a in arrays}) == 1:
            columns[column_name(suffix)] = pa.FixedShapeTensorArray.from_numpy_ndarray(
                np.stack(arrays))
        else:
            columns[column_name(suffix) + "_npy"] = pa.array(blobs, pa.binary())
    rows_per_group = min(64, max(16, _ROW_GROUP_BYTES // frame_bytes))
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer, compression="zstd", row_group_size=rows_per_group)
    return buffer.getvalue()


def shard_bytes(fmt: str, members) -> bytes:
    return webdataset_bytes(members) if fmt == "webdataset" else parquet_bytes(members)


def write_shard(task, plan: ShardPlan, store, kinds, *, decoder, batch_size: int = 16,
                keep_suffix: bool = False, before_commit=None) -> list[ManifestRow]:
    """Decode, encode and put ``plan``'s shard whole, then its commit record; returns the
    manifest rows (also in the record). An exception anywhere before the record is put
    leaves no record, so the shard does not exist for readers or for resume.
    ``before_commit(plan)``, when given, runs between the two puts (fault injection)."""
    members, rows = decode_shard(task, plan, kinds, decoder=decoder, batch_size=batch_size,
                                 keep_suffix=keep_suffix)
    record = {"id": plan.id, "format": plan.format, "data": None, "size": 0, "sha256": None,
              "frames": len(members), "members": [key for key, _, _ in members],
              "settings": settings(task, kinds, plan.format),
              "rows": [dataclasses.asdict(row) for row in rows]}
    if members:
        data = shard_bytes(plan.format, members)
        store.put(plan.data_key, data)
        record.update(data=plan.data_key, size=len(data),
                      sha256=hashlib.sha256(data).hexdigest())
    if before_commit is not None:
        before_commit(plan)
    store.put(plan.record_key, json.dumps(record, sort_keys=True, indent=1).encode("utf-8"))
    return rows
