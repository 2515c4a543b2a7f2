"""Server subprocesses on 127.0.0.1: start, wait until they answer, measure their CPU time, always stop them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Server", "ServerError", "fetch", "free_port", "launched"]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerError(RuntimeError):
    """A server did not start, died, or answered a setup request with an error."""


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process (all its threads) so far, from /proc."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # the command name may contain spaces; skip past it
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
        return (utime + stime) / _CLOCK_TICKS

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str, headers: Mapping[str, str] | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    """GET ``url``: (status, body); HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310 - loopback http only
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _wait_ready(server: Server, ready_path: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise ServerError(f"{server.name} exited with {server.proc.returncode} before answering:\n"
                              f"{server.log_tail()}")
        try:
            status, _ = fetch(server.base_url + ready_path, timeout=2.0)
            if status == 200:
                return
            last_error = f"HTTP {status}"
        except OSError as err:
            last_error = str(err)
        time.sleep(0.1)
    raise ServerError(f"{server.name} did not answer {ready_path} within {timeout_s:.0f}s ({last_error}):\n"
                      f"{server.log_tail()}")


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown (runs the lifespan's exit)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace_s)


@contextmanager
def launched(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    ready_path: str = "/health",
    startup_timeout_s: float = 60.0,
    cwd: Path | None = None,
) -> Iterator[Server]:
    """Start ``argv`` (which must listen on ``port``), wait for ``ready_path`` to answer 200, yield, then stop it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(env) if env is not None else None, cwd=cwd)
    server = Server(name, proc, port, log_path)
    try:
        _wait_ready(server, ready_path, startup_timeout_s)
        yield server
    finally:
        _stop(proc)
