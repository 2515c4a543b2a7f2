"""A scripted stand-in for llama-server's ``POST /v1/completions`` on a real loopback socket, for unit tests of the
engine's streaming path (aiohttp has no mock transport; a socket also exercises what a dying worker really does:
connections closed before an answer, streams cut mid-way).

``FakeLlama(handler)``: ``handler(path, body)`` returns a ``Reply``; the server records every request, keeps
connections alive between requests, and is stopped by ``close()`` (use it as a context manager).
``FakeLlama(handler, reset_reused=True)``: every request that arrives on a connection which already served one is
answered with a TCP reset as soon as its headers are read, before its body: what a client meets when it sends on a
keep-alive connection llama-server closed (idle timeout) but whose close the client had not yet seen. A large body
is reset while the client awaits the answer (aiohttp: ``ClientOSError: Connection reset by peer``).
``FakeLlama(handler, idle_reset_s=0.1)``: a connection idle that long after an answer is reset, as llama-server closes
idle keep-alive connections (after 5 s); a client that reuses it before its event loop has seen the reset fails to
write the request (aiohttp: ``ClientOSError: Can not write request body``).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FakeLlama", "Reply", "sse"]


def sse(text: str, finish: str | None = None) -> str:
    """One llama.cpp completion chunk as an SSE ``data:`` line."""
    chunk: dict[str, Any] = {"choices": [{"text": text, "finish_reason": finish}]}
    if finish:
        chunk["usage"] = {"prompt_tokens": 3, "completion_tokens": 2}
    return "data: " + json.dumps(chunk)


@dataclass
class Reply:
    lines: list[str] = field(default_factory=list)  # streamed: one chunk per line (status 200)
    status: int = 200
    body: bytes | None = None  # a whole (non-streamed) body instead, e.g. an error
    cut: bool = False  # after the lines, reset the connection (the worker died mid-stream)
    silent: bool = False  # close the connection without any answer (stale keep-alive, or a dying worker)


Handler = Callable[[str, dict[str, Any]], Reply]


class FakeLlama:
    def __init__(self, handler: Handler, *, reset_reused: bool = False, idle_reset_s: float | None = None) -> None:
        self.handler = handler
        self.reset_reused = reset_reused
        self.idle_reset_s = idle_reset_s
        self.resets = 0  # requests answered with a reset (reset_reused)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.connections = 0  # accepted so far
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)  # accept() wakes up to see close(); closing alone does not interrupt it
        self.address = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._closed = False
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def __enter__(self) -> FakeLlama:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        self._sock.close()
        for conn in list(self._conns):
            _close(conn)
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self._conns.append(conn)
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        served = 0
        try:
            while True:
                if served and self.idle_reset_s is not None and not select.select([conn], [], [], self.idle_reset_s)[0]:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return  # idle too long: reset
                request_line = reader.readline()
                if not request_line:
                    return
                path = request_line.split()[1].decode()
                length = 0
                while (line := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                if self.reset_reused and served:
                    self.resets += 1
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
                    return
                served += 1
                raw = reader.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                self.requests.append((path, body))
                reply = self.handler(path, body)
                if reply.silent:
                    return
                if reply.body is not None or reply.status != 200:
                    content = reply.body or b""
                    conn.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                                 % (reply.status, len(content), content))
                    continue
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
                for item in reply.lines:
                    data = (item + "\n\n").encode()
                    conn.sendall(b"%x\r\n%s\r\n" % (len(data), data))
                if reply.cut:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
                    return
                conn.sendall(b"0\r\n\r\n")
        except OSError:
            return
        finally:
            reader.close()
            _close(conn)


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.close()
