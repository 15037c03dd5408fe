"""Reading sharded outputs back for training: a torch ``IterableDataset``.

``ShardDataset("s3://bucket/out")`` (or a local folder) iterates over every frame of the
committed shards of a ``--format webdataset`` or ``--format parquet`` output, each frame a
dict::

    {"depth": tensor (H, W), "path": "s3://bucket/in/a.png", "frame": 0,
     "name": "a", "key": "000000000"}

(``normals`` (H, W, 3), ``labels``, ``values``... for the other tasks; outputs that are
not arrays, such as ``depth_png``, as bytes). Only shards with a commit record exist for
it: a shard being written, or left behind by a crash, is never read.

Splitting: the committed shards, sorted by id, are dealt out round-robin over
``world_size x num_workers`` readers, reader ``rank * num_workers + worker_id`` taking
every such shard from its index on, so every frame is read exactly once per epoch. Fewer
shards than readers is a ``ValueError`` (rather than readers that wait for data that never
comes). ``rank``/``world_size`` default to ``torch.distributed``'s when it is initialised,
else the ``RANK``/``WORLD_SIZE`` environment variables, else 0/1; DataLoader workers come
from ``torch.utils.data.get_worker_info()``. Storage clients are made inside each worker
process on first use (they are not fork-safe).

``shard_urls(root)`` lists the committed data objects, for other readers, e.g.
``ray.data.read_parquet(shard_urls("s3://bucket/out"))``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os

import numpy as np
import torch

from vbkernels.storage import open_store
from vbkernels.storage.shards import column_name, read_records


def committed_records(root, storage_options: dict | None = None) -> list[dict]:
    """The commit records of the shards under ``root``, sorted by shard id."""
    records = read_records(open_store(root, storage_options))
    return [records[key] for key in sorted(records) if records[key]["data"]]


def shard_urls(root, storage_options: dict | None = None) -> list[str]:
    """Full names of the committed shards' data objects (``s3://bucket/out/shards/....parquet``)."""
    store = open_store(root, storage_options)
    return [store.url(record["data"]) for record in committed_records(root, storage_options)]


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class ShardDataset(torch.utils.data.IterableDataset):
    """Every frame of a sharded output once per epoch; see the module docstring.

    ``root``: the output folder or URI given to ``vbkernels decode ... -o``;
    ``storage_options``: as ``--storage-option``; ``rank``/``world_size``: this process's
    place among distributed ranks (default: see above); ``verify``: check each shard's
    SHA-256 against its commit record before reading it.
    """

    def __init__(self, root, *, storage_options: dict | None = None, rank: int | None = None,
                 world_size: int | None = None, verify: bool = True):
        self.root = str(root)
        self.storage_options = storage_options
        self.records = committed_records(self.root, storage_options)
        if not self.records:
            raise ValueError(f"{self.root} holds no committed shards (shards/*.json); was it "
                             f"written with --format webdataset or parquet?")
        self.rank, self.world_size = rank, world_size
        self.verify = verify
        self._store = None

    def __len__(self) -> int:
        """Frames in all committed shards (every rank and worker together)."""
        return sum(record["frames"] for record in self.records)

    def shards_for(self, rank: int, world_size: int, worker: int, workers: int) -> list[dict]:
        """The records reader (rank, worker) reads."""
        readers = world_size * workers
        if len(self.records) < readers:
            raise ValueError(
                f"{self.root} has {len(self.records)} shard(s) for {world_size} rank(s) x "
                f"{workers} DataLoader worker(s) = {readers} readers: every reader needs at "
                f"least one shard (write smaller shards with --shard-size, or use fewer "
                f"workers)")
        return self.records[rank * workers + worker::readers]

    def __iter__(self):
        rank, world_size = _distributed()
        rank = self.rank if self.rank is not None else rank
        world_size = self.world_size if self.world_size is not None else world_size
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for record in self.shards_for(rank, world_size, worker, workers):
            yield from self._samples(record)

    @property
    def store(self):
        if self._store is None:  # made in the process that reads (a DataLoader worker)
            self._store = open_store(self.root, self.storage_options)
        return self._store

    def _samples(self, record: dict):
        data = self.store.get(record["data"])
        if self.verify and hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise OSError(f"{self.store.url(record['data'])} does not match its commit "
                          f"record's SHA-256 (corrupt or replaced)")
        if record["format"] == "webdataset":
            return _tar_samples(data, self.store.url(record["data"]))
        return _parquet_samples(data)


def _sample(meta: dict, key: str) -> dict:
    return {"path": meta["path"], "frame": meta["frame"], "name": meta["name"], "key": key}


def _tar_samples(data: bytes, url: str):
    from webdataset.tariterators import group_by_keys, tar_file_iterator

    files = ({**member, "__url__": url} for member in tar_file_iterator(io.BytesIO(data)))
    for sample in group_by_keys(files):
        out = _sample(json.loads(sample["json"]), sample["__key__"])
        for extension, value in sample.items():
            if extension.startswith("__") or extension == "json":
                continue
            if extension.endswith(".npy") or extension == "npy":
                out[column_name("." + extension)] = torch.from_numpy(
                    np.load(io.BytesIO(value), allow_pickle=False))
            else:
                out[column_name("." + extension)] = value
        yield out


_META_COLUMNS = ("key", "path", "frame", "name", "meta")


def _parquet_samples(data: bytes):
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(io.BytesIO(data))
    for group in range(parquet.num_row_groups):
        table = parquet.read_row_group(group)
        meta = table.select(["key", "meta"]).to_pylist()
        columns = {}
        for name in table.column_names:
            if name in _META_COLUMNS:
                continue
            column = table.column(name).combine_chunks()
            if isinstance(column.type, pa.FixedShapeTensorType):
                columns[name] = torch.from_numpy(column.to_numpy_ndarray().copy())
            elif name.endswith("_npy"):
                columns[name[:-4]] = [torch.from_numpy(np.load(io.BytesIO(v), allow_pickle=False))
                                      for v in column.to_pylist()]
            else:
                columns[name] = column.to_pylist()
        for i, row in enumerate(meta):
            out = _sample(json.loads(row["meta"]), row["key"])
            out.update({name: values[i] for name, values in columns.items()})
            yield out
