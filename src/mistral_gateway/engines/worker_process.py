"""The llama.cpp server of one model, reached over loopback HTTP: in a worker process (``engines.llama_worker``,
restarted when it dies) or in this process. Every transport failure surfaces as an ``EngineError``: an
``EngineUnavailable`` (retry shortly) when the worker process died, never a raw ``httpx`` or ``aiohttp``
exception.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from mistral_gateway.engines.base import EngineError, EngineTimeout, EngineUnavailable
from mistral_gateway.engines.loopback_stream import CompletionStream

__all__ = ["InProcessServer", "LoopbackServer", "Supervisor", "WorkerProcess", "WorkerStartError"]

log = logging.getLogger("mistral_gateway.engines")

RETRY_AFTER = 2.0  # seconds a client should wait after its request died with the worker (a restart takes ~1-5 s)
_STDERR_LINES = 20
# llama-server (cpp-httplib) closes idle keep-alive connections after 5 s. Drop ours sooner, and send a request
# once more when the server closed the connection before answering (it never saw the request): without both, a
# request after a pause can meet a connection closed under it ("Server disconnected without sending a response").
_KEEPALIVE_S = 2.0
# Also a reset before or while the request was written: these calls (templates, tokens) have no side effect.
_STALE = (httpx.RemoteProtocolError, httpx.ConnectError, httpx.WriteError, httpx.ReadError)


class WorkerStartError(EngineError):
    """The worker process exited (or hung) before it was ready to serve."""


class LoopbackServer:
    """llama-server's HTTP API on a loopback address, guarded by ``key``: JSON calls (blocking, from the engine's
    pool threads) and streamed completions (``completions``, on the event loop)."""

    native = False  # True: ``handle_completions(body, callback)``, a blocking call, instead of ``completions``

    def __init__(self, address: str, key: str, model_id: str, *, transport: httpx.BaseTransport | None = None) -> None:
        self.listening_address = address
        self.model_id = model_id
        self._http = httpx.Client(base_url=address, headers={"Authorization": f"Bearer {key}"}, timeout=60,
                                  limits=httpx.Limits(keepalive_expiry=_KEEPALIVE_S), transport=transport)
        self.stream = CompletionStream(address, key, model_id, keepalive_s=_KEEPALIVE_S)

    def alive(self) -> bool:
        return True

    def post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            try:
                response = self._http.post(path, content=json.dumps(body))
            except _STALE:
                response = self._http.post(path, content=json.dumps(body))  # on a fresh connection
        except httpx.HTTPError as exc:
            raise self.failure(path, exc) from exc
        if response.status_code != 200:
            raise EngineError(f"model {self.model_id!r}: llama.cpp {path} failed ({response.status_code}): "
                              f"{response.text[:300]}")
        try:
            return response.json()
        except ValueError as exc:
            raise EngineError(f"model {self.model_id!r}: llama.cpp {path} answered invalid JSON") from exc

    def completions(self, body: dict[str, Any], path: str = "/v1/completions") -> AsyncIterator[dict[str, Any]]:
        """Stream ``/v1/completions`` (or ``path``) on the running event loop: each chunk, or ``{"error": {...}}`` once
        when llama.cpp refused the request. Closing the iterator early closes the connection: llama.cpp stops the
        slot."""
        return self.stream.chunks(body, self.failure, path)

    def failure(self, what: str, exc: Exception) -> EngineError:
        """What a transport failure (httpx's or aiohttp's) means for the caller: a timeout is worth retrying later."""
        if isinstance(exc, httpx.TimeoutException | TimeoutError):
            return EngineTimeout(f"model {self.model_id!r}: llama.cpp {what} timed out ({type(exc).__name__}: {exc})",
                                 retry_after=RETRY_AFTER)
        return EngineError(f"model {self.model_id!r}: llama.cpp {what} failed ({type(exc).__name__}: {exc})")

    def close(self) -> None:
        self._http.close()
        self.stream.close()


class InProcessServer(LoopbackServer):
    """llama-server inside this process (``isolate: false``): completions through its native call, on a thread."""

    native = True

    def __init__(self, config: dict[str, Any], model_id: str) -> None:
        import xllamacpp

        from mistral_gateway.engines.llama_worker import build_params

        try:
            self._server = xllamacpp.Server(build_params(config))
        except Exception as exc:
            raise EngineError(f"model {model_id!r}: llama.cpp cannot load {config['path']}: {exc}") from exc
        super().__init__(self._server.listening_address, config["key"], model_id)

    def handle_completions(self, body: dict[str, Any], callback: Callable[[dict[str, Any]], Any]) -> Any:
        return self._server.handle_completions(body, callback)

    def close(self) -> None:
        super().close()
        del self._server


class WorkerProcess(LoopbackServer):
    """One model's llama.cpp server in a child process: two llama.cpp servers in one process slow each other down
    (measured: SmolLM2 146 -> 100 tok/s with an idle second model), and a child has its own OpenMP runtime and GIL.
    The child exits when its stdin closes, i.e. when we close it or this process dies (even by SIGKILL)."""

    def __init__(self, config: dict[str, Any], model_id: str, *, start_timeout: float = 600.0) -> None:
        self.model_id = model_id
        self._proc = subprocess.Popen([sys.executable, "-m", "mistral_gateway.engines.llama_worker"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, encoding="utf-8", errors="replace")
        self.pid = self._proc.pid
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self._drain = threading.Thread(target=self._drain_stderr, name=f"llama-worker-{self.pid}-stderr", daemon=True)
        self._drain.start()
        self._exit_noted = False
        self._note_lock = threading.Lock()
        try:
            address = self._handshake(config, start_timeout)
        except BaseException:
            self._stop()
            raise
        super().__init__(address, config["key"], model_id)

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def alive(self) -> bool:
        return self._proc.poll() is None

    def stderr_tail(self, lines: int = 5) -> str:
        return " | ".join([line for line in self._stderr if line.strip()][-lines:])

    def failure(self, what: str, exc: Exception) -> EngineError:
        try:
            code = self._proc.wait(timeout=2.0)  # a dead peer resets connections while it exits
        except subprocess.TimeoutExpired:
            return super().failure(what, exc)
        self.note_exit()
        return EngineUnavailable(f"model {self.model_id!r}: its llama.cpp worker (pid {self.pid}) {_exit(code)} "
                                 f"during {what}; it is restarted on the next request, retry shortly",
                                 retry_after=RETRY_AFTER)

    def note_exit(self) -> None:
        """Log, once, that the worker died."""
        with self._note_lock:
            if self._exit_noted or self._proc.poll() is None:
                return
            self._exit_noted = True
        self._drain.join(timeout=1)
        tail = self.stderr_tail()
        log.warning("model %r: llama.cpp worker (pid %d) %s (exit code %s)%s", self.model_id, self.pid,
                    _exit(self._proc.returncode), self._proc.returncode, f"; stderr: {tail}" if tail else "")

    def reap(self) -> None:
        """Stop and reap the process, keeping the blocking HTTP client: calls still using it fail as ``failure``
        says. Streams still open fail the same way when their connections close."""
        self._stop()
        self.stream.close()

    def close(self) -> None:
        super().close()
        self._stop()

    # -- internals ----------------------------------------------------------------------------------------------
    def _handshake(self, config: dict[str, Any], timeout: float) -> str:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        with contextlib.suppress(OSError):  # it already exited: reported below
            self._proc.stdin.write(json.dumps(config) + "\n")
            self._proc.stdin.flush()
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        line = self._proc.stdout.readline() if ready else ""
        if line:
            try:
                return str(json.loads(line)["address"])
            except (ValueError, KeyError, TypeError):
                self._stop()
                problem = f"answered {line.strip()[:200]!r} instead of its address"
        elif not ready:
            self._stop()
            problem = f"was not ready after {timeout:.0f} s"
        else:  # end of its stdout: it exited
            try:
                code = self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._stop()
                code = self._proc.returncode
            problem = f"{_exit(code)} before it was ready"
        self._drain.join(timeout=2)
        tail = self.stderr_tail()
        raise WorkerStartError(f"model {self.model_id!r}: the llama.cpp worker (pid {self.pid}) {problem}"
                               f"{f'; its stderr: {tail}' if tail else ' (no stderr output)'}")

    def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:  # keep the tail for error messages, pass it on as before
            self._stderr.append(line.rstrip())
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(line)

    def _stop(self) -> None:
        """Close its stdin (it exits by itself), kill it if it does not, and reap it."""
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):  # broken pipe: it is gone
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


class Supervisor:
    """Keeps one server running. A dead one is replaced on the next ``current()`` call, by one caller (the others
    wait on the lock and get the new one). A worker that keeps failing to start is tried at most ``max_failed_starts``
    times within ``window`` seconds; past that ``current()`` raises an error naming the model and the last failure
    (with the worker's stderr) until the window has passed."""

    def __init__(self, start: Callable[[], Any], model_id: str, *, max_failed_starts: int = 3, window: float = 60.0,
                 backoff: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        self._start = start
        self._clock = clock  # measures the failed-starts window (tests move it instead of sleeping)
        self.model_id = model_id
        self._max_failed_starts = max_failed_starts
        self._window = window
        self._backoff = backoff
        self._lock = threading.Lock()
        self._failed_starts: list[float] = []
        self._last_failure: EngineError | None = None
        self._closed = False
        self.starts = 0
        self.server = self._start()  # the first load: one attempt, its error goes to the caller as it is
        self.starts = 1

    def current(self) -> Any:
        server = self.server
        if server.alive():
            return server
        with self._lock:
            if self._closed:
                raise EngineError(f"model {self.model_id!r} is closed")
            if self.server.alive():
                return self.server  # another caller restarted it while we waited
            self.server.note_exit()  # only worker processes die
            self.server.reap()
            self.server = self._restart()
            return self.server

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self.server.close()

    def _restart(self) -> Any:
        """A new server, trying at most as often as the failed starts of the last ``window`` seconds leave room."""
        now = self._clock()
        self._failed_starts = [t for t in self._failed_starts if now - t < self._window]
        for attempt in range(self._max_failed_starts - len(self._failed_starts)):
            if attempt:
                time.sleep(self._backoff * attempt)
            try:
                server = self._start()
            except EngineError as exc:
                self.starts += 1
                self._failed_starts.append(self._clock())
                self._last_failure = exc
                log.warning("model %r: starting a new llama.cpp worker failed (%d in a row): %s", self.model_id,
                            len(self._failed_starts), exc)
                continue
            self.starts += 1
            self._failed_starts.clear()
            log.warning("model %r: llama.cpp worker restarted (pid %s)", self.model_id, getattr(server, "pid", "?"))
            return server
        wait = max(0.0, self._failed_starts[0] + self._window - self._clock()) if self._failed_starts else 0.0
        raise EngineError(f"model {self.model_id!r}: its llama.cpp worker failed to start {len(self._failed_starts)} "
                          f"times in a row; giving up for now (next attempt in {wait:.0f} s). "
                          f"Last failure: {self._last_failure}")


def _exit(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
