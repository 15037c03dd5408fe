"""A real S3 API on 127.0.0.1, for the tests and the storage benchmark: moto's
ThreadedMotoServer (``pip install "moto[server]"``, in the ``test`` extra), with the standard
AWS environment variables pointing every client (boto3, pyarrow, Ray workers started
afterwards) at it and nowhere else. ``requests`` counts the HTTP requests it served."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket

ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance-metadata address
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _RequestCounter(logging.Handler):
    """Counts the server's access-log lines by method (one per HTTP request), and keeps
    ``(method, path)`` of each in ``log`` (``path`` without the query string)."""

    def __init__(self):
        super().__init__()
        self.by_method: dict[str, int] = {}
        self.log: list[tuple[str, str]] = []

    def emit(self, record):
        match = re.search(r'"([A-Z]+) (\S+) HTTP/', record.getMessage())
        if match:
            method, path = match.group(1), match.group(2).split("?", 1)[0]
            self.by_method[method] = self.by_method.get(method, 0) + 1
            self.log.append((method, path))

    def clear(self) -> None:
        self.by_method.clear()
        self.log.clear()

    def written(self, bucket: str) -> list[str]:
        """Keys in ``bucket`` that were PUT (whole objects and multipart parts), sorted."""
        prefix = f"/{bucket}/"
        return sorted({path[len(prefix):] for method, path in self.log
                       if method in ("PUT", "POST") and path.startswith(prefix)})


requests = _RequestCounter()


@contextlib.contextmanager
def s3_server():
    """Yields the endpoint URL; the environment is restored and the server stopped after.
    The access log is counted in ``requests`` instead of printed."""
    from moto.server import ThreadedMotoServer

    log = logging.getLogger("werkzeug")
    log.setLevel(logging.INFO)
    log.propagate = False
    if requests not in log.handlers:
        log.addHandler(requests)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {key: os.environ.get(key) for key in [*ENVIRONMENT, "AWS_ENDPOINT_URL"]}
    os.environ.update(ENVIRONMENT, AWS_ENDPOINT_URL=endpoint)
    try:
        yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def make_bucket(endpoint: str, name: str):
    """Create bucket ``name``; returns a boto3 client on the server."""
    import boto3

    client = boto3.session.Session().client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=name)
    return client
