"""Where a run may write: the one check every engine applies to ``-o`` before any work.

A plain path (absolute or relative) and a ``file://`` URI (a local path written as a URI)
are local directories. ``s3://`` and any scheme an installed fsspec implementation handles
(``gs://`` with gcsfs, ``memory://``...) are object stores, written by
``vbkernels.storage``. Any other ``scheme://`` output is refused here, naming the scheme:
``pathlib`` would otherwise turn ``s3://bucket/out`` into a local folder ``s3:/bucket/out``
and the run would "succeed" writing nowhere the user meant.
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


def check_output(output) -> Path | str:
    """The local directory ``output`` names (``str``, ``Path`` or ``file://`` URI) as a
    ``Path``; an object-store URI that ``vbkernels.storage`` can write (``s3://``, or a
    scheme an installed fsspec implementation handles) as the URI string; else
    :class:`UnsupportedOutput` saying which scheme cannot be written. Creates nothing."""
    scheme = uri_scheme(output)
    if scheme is None:
        return Path(output)
    if scheme == "file":
        return file_uri_path(str(output))
    if scheme == "s3" or _fsspec_writes(scheme):
        return str(output)
    raise UnsupportedOutput(
        f"cannot write outputs to {str(output)!r}: no installed storage client handles "
        f"{scheme}:// (s3:// needs boto3; other schemes an fsspec implementation, e.g. "
        f"gcsfs for gs://); or give a local directory")


def _fsspec_writes(scheme: str) -> bool:
    """True when fsspec and its implementation for ``scheme`` are installed."""
    try:
        import fsspec

        fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError):
        return False
    return scheme not in ("http", "https")  # read-only file systems
