"""A real ``redis-server`` for tests: Debian's binary on a free loopback port, no persistence, started and stopped
by a fixture. Tests that need one skip, saying why, only where the binary is absent (.ci/run installs it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from support import free_port, stop_process

__all__ = ["REDIS_SKIPPED", "RedisServer", "redis_server", "require_redis_server"]

REDIS_SKIPPED = "redis-server is not installed (apt-get install redis-server; .ci/run installs it)"


def require_redis_server() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(REDIS_SKIPPED)
    return binary


class RedisServer:
    def __init__(self, binary: str, port: int, password: str | None = None) -> None:
        self.binary, self.port, self.password = binary, port, password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart, on the same port) and wait until it answers."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--loglevel", "warning"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30  # a readiness wait, bounded so a broken start fails the test
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start listening")

    def kill(self) -> None:
        """SIGKILL: an outage, as a crashed server would cause one."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=10)

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)

    @staticmethod
    def prefix() -> str:
        """A key prefix of its own, so tests sharing a server never see each other's keys."""
        return f"t{uuid.uuid4().hex[:12]}:"


@contextmanager
def redis_server(password: str | None = None) -> Iterator[RedisServer]:
    server = RedisServer(require_redis_server(), free_port(), password)
    try:
        server.start()
        yield server
    finally:
        server.stop()
