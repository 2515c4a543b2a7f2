"""uvicorn's httptools protocol with two limits it lacks: request header size and a header-read timeout.

httptools buffers headers without bound (a 100 MB header was accepted) and uvicorn never times out a connection
that is still sending its headers (2,000 half-open connections stayed past 30 s; slowloris). The checks cost a
comparison per received chunk and a timer per request, kept off the parsing path that makes httptools fast.

It also sends a whole (Content-Length) response in one write: uvicorn writes the status line and headers, then
the body, as two ``send()`` calls and two TCP segments (TCP_NODELAY), so the client woke for the head and again for
the body. ``OneWriteResponse`` holds the head until the body's first bytes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mistral_gateway.http.request_id import new_request_id

__all__ = ["OneWriteResponse", "guarded_protocol", "uvicorn_options"]

_BODY = -1  # _header_bytes while the request line and headers are done: the body does not count


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes = 32 * 1024
    header_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # `serve --workers N` passes this class itself (a class made by guarded_protocol cannot be pickled into
        # the worker processes) and the limits on uvicorn's Config instead
        limits = getattr(kwargs.get("config", args[0] if args else None), "gateway_header_limits", None)
        if limits is not None:
            self.max_header_bytes, self.header_timeout = limits
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_header_timer()  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._header_bytes == _BODY:
            super().data_received(data)
            return
        if self._header_timer is None:  # the first bytes of a request after a keep-alive pause
            self._arm_header_timer()
        self._header_bytes += len(data)
        super().data_received(data)
        # Still reading headers after this chunk (chunks are at most a few hundred KB): judge the total so far.
        if self._header_bytes > self.max_header_bytes and not self.transport.is_closing():
            self._reject(431, "Request Header Fields Too Large")

    def on_headers_complete(self) -> None:
        self._header_bytes = _BODY
        self._cancel_header_timer()
        # A whole request may arrive in one chunk: measure what was parsed (4: ": " and CRLF per header).
        size = len(self.url)
        for name, value in self.headers:
            size += len(name) + len(value) + 4
        if size > self.max_header_bytes:
            self._reject(431, "Request Header Fields Too Large")
            return
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        # a new request's cycle (not an upgrade's); a HEAD response has no body to carry its head
        if cycle is not None and cycle is not before and self.scope["method"] != "HEAD":
            cycle.transport = OneWriteResponse(self.transport)  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        if not self.transport.is_closing():  # after a 431 the parser still reports the rest of the chunk
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._header_bytes = 0  # the next request's headers count from here
        if not self.transport.is_closing():
            super().on_message_complete()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        # Armed at connect and by a request's first bytes (idle keep-alive is uvicorn's own timeout).
        if self._header_bytes != _BODY and not self.transport.is_closing():
            self._reject(408, "Request Timeout")

    def _reject(self, status: int, reason: str) -> None:
        self._header_bytes = _BODY
        self._cancel_header_timer()
        body = reason.encode("ascii")
        # a fresh id like every other response's (the client's own may sit in the headers being refused)
        rid = new_request_id().encode("ascii")
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
                             b"x-request-id: %s\r\nconnection: close\r\n\r\n%s"
                             % (status, body, len(body), rid, body))
        self.transport.close()


def guarded_protocol(max_header_bytes: int, header_timeout: float) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these limits."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,),
                {"max_header_bytes": max_header_bytes, "header_timeout": header_timeout})


def uvicorn_options(settings: Any) -> dict[str, Any]:
    """The uvicorn settings every server of this project runs with (``serve`` and the tests' live servers)."""
    return {"http": guarded_protocol(settings.max_header_bytes, settings.header_timeout_seconds),
            "h11_max_incomplete_event_size": settings.max_header_bytes,
            "ws_max_size": settings.realtime_max_message_bytes}  # a bigger WebSocket message closes it (1009)


class OneWriteResponse:
    """The transport as one request's response cycle sees it: the first write, when it is a response head with a
    Content-Length, waits for the next write (the body's bytes, which Starlette sends right after the head) and
    leaves with it. Anything else passes straight through: an interim ``100 Continue``, a chunked head (a stream
    shows its head at once), every later write. Closing sends a head still held (an app that failed after it)."""

    __slots__ = ("_head", "_held", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._held = False  # a head was looked at: nothing after it is held

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif not self._held and data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 1"):
            self._held = True
            if b"\r\ncontent-length: " in data:  # uvicorn writes header names lower-cased
                self._head = data
            else:
                self._transport.write(data)
        else:
            self._transport.write(data)

    def close(self) -> None:
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, ...: the connection's own
        return getattr(self._transport, name)
