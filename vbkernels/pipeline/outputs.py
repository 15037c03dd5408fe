"""Where a run may write: the one check every engine applies to ``-o`` before any work.

A plain path (absolute or relative) and a ``file://`` URI (a local path written as a URI)
are local directories. Any other ``scheme://`` output (``s3://``, ``gs://``, ``hdfs://``,
...) is refused here, naming the scheme: ``pathlib`` would otherwise turn
``s3://bucket/out`` into a local folder ``s3:/bucket/out`` and the run would "succeed"
writing nowhere the user meant. Object-store outputs are meant to be added in this one
function, so both engines pick them up together.
"""

from __future__ import annotations

import re
from pathlib import Path

from .sources import file_uri_path

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class UnsupportedOutput(ValueError):
    """``output`` names a place this installation cannot write to."""


def uri_scheme(location) -> str | None:
    """The scheme of ``scheme://...`` (lower case), None for a plain path."""
    match = _SCHEME.match(str(location))
    return match.group(1).lower() if match else None


def check_output(output) -> Path:
    """The local directory ``output`` names (``str``, ``Path`` or ``file://`` URI), or
    :class:`UnsupportedOutput` saying which scheme cannot be written. Creates nothing."""
    scheme = uri_scheme(output)
    if scheme is None:
        return Path(output)
    if scheme == "file":
        return file_uri_path(str(output))
    raise UnsupportedOutput(
        f"cannot write outputs to {str(output)!r}: {scheme}:// outputs are not supported "
        f"yet (object-store output is not implemented); give a local directory, or a "
        f"directory where the bucket is mounted (e.g. s3fs, gcsfuse)")
