"""Where outputs go: one small interface over a POSIX folder and object stores.

``open_store(target, options)`` gives a :class:`Store` for a local path (or ``file://``), an
``s3://bucket/prefix`` URI (boto3), or any other URI an fsspec file system opens (``gs://``,
``az://``, ``memory://`` ...). A store knows four things: ``put`` a whole object, ``get``
one, ``list`` what is under a prefix (once, for resume), ``delete`` one.

Writes are whole or nothing. The bytes are encoded in memory first and then sent in one
request: ``PutObject`` with a ``Content-MD5`` header on S3 (the server refuses a body that
does not match it), or a multipart upload above ``multipart_threshold`` that is aborted on
any error, so nothing is committed; on POSIX a temporary file renamed over the name. We do
not use the output streams of pyarrow or s3fs for this: an exception raised inside their
``with`` block still commits the bytes written so far, a truncated object.

Credentials and endpoints come from the standard environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``, ``~/.aws``; for
fsspec file systems, whatever that implementation reads) and from ``options`` (the command
line's ``--storage-option key=value``). Clients are made on first use in each process, so a
store can be pickled into worker processes and Ray tasks: storage clients are not fork-safe.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from pathlib import Path

from vbkernels.files import write_atomic

MiB = 1 << 20
# S3 clients' settings a --storage-option may set (boto3.client keywords), plus ours.
S3_CLIENT_OPTIONS = ("endpoint_url", "region_name", "aws_access_key_id",
                     "aws_secret_access_key", "aws_session_token", "verify")
S3_UPLOAD_OPTIONS = ("multipart_threshold", "part_size")


def is_uri(target) -> bool:
    """True for ``scheme://...`` (``file://`` included), False for a plain path."""
    return "://" in str(target)


def is_remote(target) -> bool:
    """True when ``target`` names an object store rather than a local folder."""
    return is_uri(target) and not str(target).startswith("file://")


def parse_storage_options(pairs) -> dict:
    """``["key=value", ...]`` (the command line's ``--storage-option``) -> a dict; values
    ``true``/``false`` become booleans and integers ints, everything else stays text."""
    options = {}
    for pair in pairs or ():
        key, sep, value = str(pair).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--storage-option takes key=value, got {pair!r}")
        options[key.strip()] = _typed(value.strip())
    return options


def _typed(value: str):
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        return int(value)
    except ValueError:
        return value


class Store:
    """Objects under one root: keys are POSIX-style paths relative to it (``a.depth.npy``,
    ``shards/3f2a.json``)."""

    uri: str

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` whole (replacing what is there), or raise having
        stored nothing."""
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def list(self, prefix: str = "") -> dict[str, int]:
        """``{key: size}`` of every object whose key starts with ``prefix``."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def url(self, key: str) -> str:
        """The full name of ``key`` (for messages and for readers such as Ray Data)."""
        return f"{self.uri.rstrip('/')}/{key}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


class LocalStore(Store):
    """A POSIX folder. ``put`` writes a temporary sibling and renames it
    (``vbkernels.files.write_atomic``); ``list`` walks the folder and leaves temporary files
    out."""

    def __init__(self, root):
        self.root = Path(str(root).removeprefix("file://"))
        self.uri = str(self.root)

    def put(self, key, data):
        write_atomic(self.root / key, bytes(data) if isinstance(data, memoryview) else data,
                     overwrite=True)

    def get(self, key):
        return (self.root / key).read_bytes()

    def list(self, prefix=""):
        found = {}
        start = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not start.is_dir():
            return found
        for folder, _, names in os.walk(start):
            for name in names:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue  # another writer's temporary file
                path = Path(folder) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found[key] = path.stat().st_size
        return found

    def delete(self, key):
        (self.root / key).unlink(missing_ok=True)

    def url(self, key):
        return str(self.root / key)


class S3Store(Store):
    """An S3 bucket (or any S3 API: MinIO, moto, Ceph) under ``s3://bucket/prefix``."""

    def __init__(self, uri: str, options: dict | None = None):
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"an s3:// URI needs a bucket, got {uri!r}")
        options = dict(options or {})
        unknown = sorted(set(options) - set(S3_CLIENT_OPTIONS) - set(S3_UPLOAD_OPTIONS))
        if unknown:
            raise ValueError(f"unknown storage option(s) {', '.join(unknown)} for s3:// "
                             f"(known: {', '.join(S3_CLIENT_OPTIONS + S3_UPLOAD_OPTIONS)})")
        self.uri = uri.rstrip("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.multipart_threshold = int(options.pop("multipart_threshold", 64 * MiB))
        self.part_size = max(5 * MiB, int(options.pop("part_size", 64 * MiB)))
        self.client_options = options
        self._client = None
        self._pid = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_client"] = state["_pid"] = None  # each process makes its own client
        return state

    @property
    def client(self):
        if self._client is None or self._pid != os.getpid():
            try:
                import boto3
            except ImportError:
                raise ImportError("s3:// outputs need boto3: pip install 'vbkernels[s3]'") \
                    from None
            self._client = boto3.session.Session().client("s3", **self.client_options)
            self._pid = os.getpid()
        return self._client

    def _key(self, key: str) -> str:
        return self.prefix + key

    def put(self, key, data):
        data = memoryview(data).cast("B")
        with self._errors(key):
            if len(data) > self.multipart_threshold:
                self._put_multipart(key, data)
                return
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=bytes(data),
                                   ContentMD5=_md5(data))

    @contextlib.contextmanager
    def _errors(self, key: str):
        """The S3 client's errors as ``OSError`` naming the object (NoSuchBucket,
        AccessDenied, an endpoint that does not answer...)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise OSError(f"s3://{self.bucket}/{self._key(key)}: {error.get('Code')}: "
                          f"{error.get('Message')}") from None
        except BotoCoreError as exc:
            raise OSError(f"s3://{self.bucket}/{self._key(key)}: {exc}") from None

    def _put_multipart(self, key, data: memoryview) -> None:
        """Parts of ``part_size``, each with its MD5; any error aborts the upload, so no
        object and no billed leftover parts remain (a killed process leaves an incomplete
        upload: a bucket lifecycle rule AbortIncompleteMultipartUpload removes those)."""
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=self._key(key))
        upload_id = upload["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, len(data), self.part_size), 1):
                body = bytes(data[start:start + self.part_size])
                reply = self.client.upload_part(Bucket=self.bucket, Key=self._key(key),
                                                UploadId=upload_id, PartNumber=number,
                                                Body=body, ContentMD5=_md5(body))
                parts.append({"PartNumber": number, "ETag": reply["ETag"]})
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=self._key(key),
                                                  UploadId=upload_id,
                                                  MultipartUpload={"Parts": parts})
        except BaseException:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self._key(key),
                                               UploadId=upload_id)
            raise

    def get(self, key):
        with self._errors(key):
            return self.client.get_object(Bucket=self.bucket,
                                          Key=self._key(key))["Body"].read()

    def list(self, prefix=""):
        found = {}
        with self._errors(prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix))
            for page in pages:
                for item in page.get("Contents", ()):
                    found[item["Key"][len(self.prefix):]] = item["Size"]
        return found

    def delete(self, key):
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


def _md5(data) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


class FsspecStore(Store):
    """Any other scheme an fsspec file system handles (``gs://`` with gcsfs, ``az://`` with
    adlfs, ``memory://``...). ``put`` is the file system's ``pipe_file``: one upload of the
    whole bytes (GCS and Azure commit an object only when its last byte arrived)."""

    def __init__(self, uri: str, options: dict | None = None):
        try:
            import fsspec
        except ImportError:
            raise ImportError(f"{uri.split('://')[0]}:// outputs need fsspec and its "
                              f"implementation for that scheme (e.g. gcsfs)") from None
        self.uri = uri.rstrip("/")
        self.protocol = uri.split("://", 1)[0]
        self.options = dict(options or {})
        try:
            fsspec.get_filesystem_class(self.protocol)
        except (ImportError, ValueError) as exc:
            raise ImportError(f"cannot open {self.protocol}:// outputs: {exc}") from None
        self._fs = None
        self._pid = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fs"] = state["_pid"] = None
        return state

    @property
    def fs(self):
        if self._fs is None or self._pid != os.getpid():
            import fsspec

            self._fs = fsspec.filesystem(self.protocol, **self.options)
            self._pid = os.getpid()
        return self._fs

    def _path(self, key):
        return f"{self.uri}/{key}"

    def put(self, key, data):
        self.fs.pipe_file(self._path(key), bytes(data))

    def get(self, key):
        return self.fs.cat_file(self._path(key))

    def list(self, prefix=""):
        root = self.fs._strip_protocol(self.uri).rstrip("/")
        try:
            found = self.fs.find(root, detail=True)
        except FileNotFoundError:
            return {}
        out = {}
        for path, info in found.items():
            key = self.fs._strip_protocol(path)[len(root) + 1:]
            if key.startswith(prefix) and info.get("type", "file") == "file":
                out[key] = int(info.get("size") or 0)
        return out

    def delete(self, key):
        self.fs.rm_file(self._path(key))


def open_store(target, options: dict | None = None) -> Store:
    """The store for ``target``: a local path or ``file://`` URI, ``s3://bucket/prefix``,
    or another fsspec URI; ``options`` as ``parse_storage_options`` makes them."""
    text = str(target)
    if not is_remote(text):
        if options:
            raise ValueError(f"storage options are for object stores, not the folder {text}")
        return LocalStore(text)
    if text.startswith("s3://"):
        return S3Store(text, options)
    return FsspecStore(text, options)
