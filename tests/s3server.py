"""A real S3 API on 127.0.0.1 for the storage tests: moto's ThreadedMotoServer, with the
standard AWS environment variables pointing every client (boto3, pyarrow, Ray's workers
started afterwards) at it and nowhere else."""

from __future__ import annotations

import contextlib
import os
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


@contextlib.contextmanager
def s3_server():
    """Yields the endpoint URL; the environment is restored and the server stopped after."""
    from moto.server import ThreadedMotoServer

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
