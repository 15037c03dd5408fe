"""Storage for decoded outputs: POSIX folders and object stores behind one interface
(:mod:`.stores`), the manifest as part objects on object stores (:mod:`.manifest_parts`),
and sharded outputs, WebDataset tars and Parquet files with commit records
(:mod:`.shards`)."""

from .manifest_parts import PartManifestWriter, new_run_id, put_summary, read_part_manifest
from .stores import (
    FsspecStore,
    LocalStore,
    S3Store,
    Store,
    is_remote,
    is_uri,
    open_store,
    parse_storage_options,
)

__all__ = [
    "FsspecStore", "LocalStore", "PartManifestWriter", "S3Store", "Store", "is_remote",
    "is_uri", "new_run_id", "open_store", "parse_storage_options", "put_summary",
    "read_part_manifest",
]
