"""A real S3 API server for tests: moto's server in its own process on loopback, started and stopped by a fixture."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mistral_gateway.storage.blobs_s3 import MIN_PART_SIZE, S3BlobStore, S3Config
from support import free_port, stop_process

__all__ = ["S3Server", "s3_server"]

ACCESS_KEY = "testing"
SECRET_KEY = "testing-secret"
REGION = "us-east-1"


class S3Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.endpoint_url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        stop_process(self.proc, grace=10)

    def config(self, bucket: str, *, prefix: str = "blobs/", part_size: int = MIN_PART_SIZE) -> S3Config:
        return S3Config(bucket=bucket, prefix=prefix, endpoint_url=self.endpoint_url, region=REGION,
                        access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, part_size=part_size)

    def new_bucket(self) -> str:
        """A fresh bucket, so tests sharing the server never see each other's objects or uploads."""
        name = f"t-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name

    def store(self, *, part_size: int = MIN_PART_SIZE) -> S3BlobStore:
        return S3BlobStore(self.config(self.new_bucket(), part_size=part_size))

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


def _wait_listening(proc: subprocess.Popen[bytes], port: int) -> None:
    """Poll until the server accepts connections; a readiness wait, bounded so a broken start fails the test."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("moto server did not start listening")


@contextmanager
def s3_server() -> Iterator[S3Server]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(proc, port)
        yield S3Server(proc, port)
    finally:
        stop_process(proc, grace=10)
