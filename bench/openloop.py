"""Open-loop HTTP/1.1 load generator: requests at a fixed offered rate, latency measured from each request's
*intended* send time, so a slow server cannot slow the load down and hide its own queueing (no coordinated
omission). Run as its own process; prints one JSON report line on stdout.

    python bench/openloop.py --url http://127.0.0.1:8123/v1/chat/completions --rate 500 --duration 10 --warmup 2 \\
        --body '{"model":"m","messages":[{"role":"user","content":"hi"}]}' -H "Authorization: Bearer T" \\
        --expect "canned answer"

How it works:

- Request ``i`` is due at ``start + i / rate`` (a constant rate). A Linux ``timerfd`` (nanosecond clock, read by the
  event loop) fires at those instants; when the loop wakes late, every request already due is sent at once and
  keeps its intended time. Without timerfd it falls back to the event loop's own timers (millisecond
  granularity, reported as ``scheduler``).
- Requests go over a pool of keep-alive connections: an idle connection (the most recently used) if there is one,
  else a new one up to ``--max-connections``, else the request waits in a FIFO queue; that wait counts in its
  latency, as it would for a real client.
- Requests due during ``--warmup`` are sent but not counted. The report covers the requests due in the next
  ``--duration`` seconds: latency (intended send -> last byte) and time to first body byte percentiles, the
  generator's own dispatch lag (intended -> handed to the pool; ``send_lag`` adds the wait for a free
  connection), service time (written -> last byte), achieved throughput (successful responses completed inside the
  window / its length), errors by kind, and requests still unfinished ``--drain`` seconds after the window
  (their latency counts as at least that long: percentiles are then lower bounds).
- A response counts as successful when its status is 2xx and its body contains every ``--expect`` string.

Cheap by construction: one process, no HTTP library, the request bytes built once, uvloop when installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import math
import os
import resource
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ParseError", "RequestRecord", "ResponseParser", "build_request", "intended_offsets_ns", "main",
           "percentile", "summarise"]

BODY_KEEP = 1 << 16  # bytes of each response body kept for the --expect checks
IDLE_MAX_S = 4.0  # uvicorn closes idle keep-alive connections after 5 s: never reuse one idle this long


# -- pure logic (tested in tests/unit/test_bench_proxy.py) --------------------------------------------------------
def intended_offsets_ns(rate: float, seconds: float) -> list[int]:
    """When each request is due, in ns after the start: ``i / rate`` for every ``i`` with ``i / rate < seconds``."""
    if rate <= 0 or seconds <= 0:
        return []
    count = math.ceil(rate * seconds - 1e-9)
    return [round(i * 1e9 / rate) for i in range(count)]


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of values sorted in ascending order (``q`` in 0..100); None when empty."""
    if not ordered:
        return None
    rank = math.ceil(q / 100.0 * len(ordered))
    return ordered[min(len(ordered), max(1, rank)) - 1]


def _stats_ms(values_ns: list[int]) -> dict[str, float | None]:
    ordered = sorted(values_ns)
    if not ordered:
        return {"p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    out: dict[str, float | None] = {f"p{q}": percentile(ordered, q) / 1e6 for q in (50, 90, 99)}  # type: ignore[operator]
    out["max"] = ordered[-1] / 1e6
    out["mean"] = sum(ordered) / len(ordered) / 1e6
    return out


@dataclass(slots=True)
class RequestRecord:
    intended_ns: int
    dispatched_ns: int | None = None  # handed to the pool by the scheduler (its lateness is the generator's own)
    sent_ns: int | None = None  # written to a connection (later than dispatched while waiting for one)
    ttfb_ns: int | None = None  # first byte of the response body
    done_ns: int | None = None  # last byte (or the failure)
    status: int | None = None
    error: str | None = None  # None: a successful response

    @property
    def finished(self) -> bool:
        return self.done_ns is not None

    @property
    def ok(self) -> bool:
        return self.done_ns is not None and self.error is None


def summarise(records: Sequence[RequestRecord], window_start_ns: int, window_end_ns: int,
              deadline_ns: int) -> dict[str, Any]:
    """The report over the requests due in ``[window_start_ns, window_end_ns)``. Requests unfinished at
    ``deadline_ns`` count with latency ``deadline - intended`` (a lower bound) and are reported as unfinished;
    failed ones are errors (by kind) and stay out of the latency figures."""
    window = [r for r in records if window_start_ns <= r.intended_ns < window_end_ns]
    latency, ttfb, service, lag, dispatch_lag = [], [], [], [], []
    errors: dict[str, int] = {}
    first_error = None
    unfinished = 0
    for r in window:
        if r.dispatched_ns is not None:
            dispatch_lag.append(r.dispatched_ns - r.intended_ns)
        if r.sent_ns is not None:
            lag.append(r.sent_ns - r.intended_ns)
        if not r.finished:
            unfinished += 1
            latency.append(deadline_ns - r.intended_ns)
            continue
        if r.error is not None:
            errors[r.error.split(":", 1)[0]] = errors.get(r.error.split(":", 1)[0], 0) + 1
            first_error = first_error or r.error
            continue
        assert r.done_ns is not None
        latency.append(r.done_ns - r.intended_ns)
        if r.ttfb_ns is not None:
            ttfb.append(r.ttfb_ns - r.intended_ns)
        if r.sent_ns is not None:
            service.append(r.done_ns - r.sent_ns)
    duration_s = (window_end_ns - window_start_ns) / 1e9
    completed_in_window = sum(1 for r in records if r.ok and window_start_ns <= r.done_ns < window_end_ns)  # type: ignore[operator]
    return {
        "scheduled": len(window),
        "ok": sum(1 for r in window if r.ok),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "first_error": first_error,
        "unfinished": unfinished,
        "duration_s": duration_s,
        "achieved_rps": completed_in_window / duration_s if duration_s > 0 else 0.0,
        "latency_ms": _stats_ms(latency),
        "ttfb_ms": _stats_ms(ttfb),
        "service_ms": _stats_ms(service),
        "send_lag_ms": _stats_ms(lag),
        "dispatch_lag_ms": _stats_ms(dispatch_lag),
    }


class ParseError(ValueError):
    """The server sent something that is not an HTTP/1.1 response."""


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class ResponseParser:
    """Incremental HTTP/1.x response parser: status line and headers, then a body framed by ``Content-Length``,
    chunked transfer coding, or the end of the connection. Keeps the first ``BODY_KEEP`` body bytes (de-chunked)."""

    __slots__ = ("_buf", "_remaining", "_state", "body", "body_started", "headers", "keep_alive", "status")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._buf = bytearray()
        self._state = _HEAD
        self._remaining = 0
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = bytearray()
        self.body_started = False
        self.keep_alive = True

    @property
    def complete(self) -> bool:
        return self._state == _DONE

    @property
    def until_close(self) -> bool:
        return self._state == _UNTIL_CLOSE

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ParseError(f"bad status line {lines[0][:80]!r}")
        self.status = int(parts[1])
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise ParseError(f"bad header line {line[:80]!r}")
            self.headers[name.strip().lower()] = value.strip()
        connection = self.headers.get(b"connection", b"").lower()
        self.keep_alive = (b"close" not in connection if parts[0] == b"HTTP/1.1" else b"keep-alive" in connection)
        if 100 <= self.status < 200:  # interim response (we never send Expect): the real one follows
            self.status = 0
            self.headers = {}
            self._state = _HEAD
        elif self.status in (204, 304):
            self._state = _DONE
        elif b"chunked" in self.headers.get(b"transfer-encoding", b"").lower():
            self._state = _CHUNK_SIZE
        elif b"content-length" in self.headers:
            try:
                self._remaining = int(self.headers[b"content-length"])
            except ValueError as err:
                raise ParseError("bad Content-Length") from err
            self._state = _LENGTH if self._remaining else _DONE
        else:
            self._state = _UNTIL_CLOSE
            self.keep_alive = False

    def _take_body(self, count: int) -> None:
        if count <= 0:
            return
        self.body_started = True
        room = BODY_KEEP - len(self.body)
        if room > 0:
            self.body += self._buf[:min(count, room)]
        del self._buf[:count]

    def feed(self, data: bytes) -> bool:
        """Add received bytes; True once the response is complete. Raises ParseError on malformed input."""
        self._buf += data
        while True:
            state = self._state
            if state == _HEAD:
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buf) > 65536:
                        raise ParseError("response head over 64 KiB")
                    return False
                head = bytes(self._buf[:end])
                del self._buf[:end + 4]
                self._head(head)
            elif state == _LENGTH:
                take = min(self._remaining, len(self._buf))
                self._take_body(take)
                self._remaining -= take
                if self._remaining:
                    return False
                self._state = _DONE
            elif state == _CHUNK_SIZE:
                end = self._buf.find(b"\r\n")
                if end < 0:
                    return False
                try:
                    size = int(bytes(self._buf[:end]).split(b";", 1)[0].strip(), 16)
                except ValueError as err:
                    raise ParseError(f"bad chunk size {bytes(self._buf[:end])[:40]!r}") from err
                del self._buf[:end + 2]
                if size:
                    self._remaining, self._state = size, _CHUNK_DATA
                else:
                    self._state = _TRAILERS
            elif state == _CHUNK_DATA:
                take = min(self._remaining, len(self._buf))
                self._take_body(take)
                self._remaining -= take
                if self._remaining:
                    return False
                self._state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if len(self._buf) < 2:
                    return False
                if self._buf[:2] != b"\r\n":
                    raise ParseError("chunk not followed by CRLF")
                del self._buf[:2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = self._buf.find(b"\r\n")
                if end < 0:
                    return False
                del self._buf[:end + 2]
                if end == 0:
                    self._state = _DONE
            elif state == _UNTIL_CLOSE:
                self._take_body(len(self._buf))
                return False
            else:  # _DONE
                if self._buf:
                    self.keep_alive = False  # bytes after the response: not a connection to reuse
                return True


def build_request(method: str, url: str, headers: Sequence[tuple[str, str]], body: bytes) -> bytes:
    """The request's bytes (HTTP/1.1, keep-alive), built once and written as they are for every request."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    names = {name.lower() for name, _ in headers}
    if body and "content-type" not in names:
        lines.append("Content-Type: application/json")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# -- the client ---------------------------------------------------------------------------------------------------
class _Connection(asyncio.Protocol):
    def __init__(self, client: _Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser()
        self.current: RequestRecord | None = None
        self.closed = False
        self.last_used_ns = time.monotonic_ns()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, record: RequestRecord) -> None:
        assert self.transport is not None
        self.current = record
        self.parser.reset()
        record.sent_ns = time.monotonic_ns()
        self.transport.write(self.client.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        record = self.current
        if record is None:  # bytes nobody asked for
            self._abort()
            return
        started = self.parser.body_started
        try:
            done = self.parser.feed(data)
        except ParseError as err:
            self._finish(now, f"protocol: {err}")
            self._abort()
            return
        if not started and self.parser.body_started:
            record.ttfb_ns = now
        if done:
            self._finish(now, self.client.verdict(self.parser))
            if self.parser.keep_alive:
                self.client.release(self)
            else:
                self._abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        now = time.monotonic_ns()
        if self.current is not None:
            if self.parser.until_close:
                self._finish(now, self.client.verdict(self.parser))
            else:
                self._finish(now, f"socket: connection lost ({exc or 'closed by peer'})")
        self.client.lost(self)

    def _finish(self, now: int, error: str | None) -> None:
        record, self.current = self.current, None
        if record is not None:
            record.done_ns, record.status, record.error = now, self.parser.status or None, error
            self.last_used_ns = now
            self.client.finished()

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


@dataclass
class _Client:
    loop: asyncio.AbstractEventLoop
    host: str
    port: int
    request: bytes
    max_connections: int
    expect: list[bytes]
    idle: list[_Connection] = field(default_factory=list)
    waiting: deque[RequestRecord] = field(default_factory=deque)
    connections: set[_Connection] = field(default_factory=set)
    opening: int = 0
    peak_connections: int = 0
    outstanding: int = 0
    all_done: asyncio.Event = field(default_factory=asyncio.Event)

    def verdict(self, parser: ResponseParser) -> str | None:
        if not 200 <= parser.status < 300:
            return f"http {parser.status}: {bytes(parser.body[:200])!r}"
        for needle in self.expect:
            if needle not in parser.body:
                return f"body: lacks {needle!r}: {bytes(parser.body[:200])!r}"
        return None

    def dispatch(self, record: RequestRecord, now_ns: int) -> None:
        record.dispatched_ns = now_ns
        self.outstanding += 1
        self.all_done.clear()
        conn = self._take_idle()
        if conn is not None:
            conn.send(record)
            return
        self.waiting.append(record)
        if len(self.connections) + self.opening < self.max_connections:
            self._open()

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic_ns()
        while self.idle:
            conn = self.idle.pop()  # the most recently used one
            if conn.closed:
                continue
            if now - conn.last_used_ns > IDLE_MAX_S * 1e9:
                conn._abort()
                continue
            return conn
        return None

    def _open(self) -> None:
        self.opening += 1
        self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            _, conn = await self.loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except OSError as err:
            self.opening -= 1
            if self.waiting:  # the request that asked for this connection fails
                record = self.waiting.popleft()
                record.done_ns, record.error = time.monotonic_ns(), f"socket: connect: {err}"
                self.finished()
            return
        self.opening -= 1
        self.connections.add(conn)
        self.peak_connections = max(self.peak_connections, len(self.connections))
        self.release(conn)

    def release(self, conn: _Connection) -> None:
        if conn.closed:
            return
        if self.waiting:
            conn.send(self.waiting.popleft())
        else:
            self.idle.append(conn)

    def lost(self, conn: _Connection) -> None:
        self.connections.discard(conn)
        if self.waiting and len(self.connections) + self.opening < self.max_connections:
            self._open()

    def finished(self) -> None:
        self.outstanding -= 1
        if self.outstanding <= 0:
            self.all_done.set()

    def close(self) -> None:
        for conn in list(self.connections):
            conn._abort()


# -- scheduling ---------------------------------------------------------------------------------------------------
class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _timerfd(start_ns: int, interval_ns: int) -> int | None:
    """A periodic CLOCK_MONOTONIC timerfd first firing at ``start_ns`` (absolute), or None if unavailable."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.timerfd_create(time.CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return None
        spec = _Itimerspec(_Timespec(interval_ns // 10**9, interval_ns % 10**9),
                           _Timespec(start_ns // 10**9, start_ns % 10**9))
        if libc.timerfd_settime(fd, 1, ctypes.byref(spec), None) != 0:  # 1: TFD_TIMER_ABSTIME
            os.close(fd)
            return None
        return int(fd)
    except (OSError, AttributeError):
        return None


async def _schedule(client: _Client, records: list[RequestRecord], interval_ns: int) -> str:
    """Dispatch every record at its intended time; returns the scheduler used."""
    loop = client.loop
    start_ns = records[0].intended_ns
    fd = _timerfd(start_ns, interval_ns)
    if fd is not None:
        finished = loop.create_future()
        position = 0

        def on_timer() -> None:
            nonlocal position
            try:
                os.read(fd, 8)
            except BlockingIOError:
                return
            now = time.monotonic_ns()
            while position < len(records) and records[position].intended_ns <= now:
                client.dispatch(records[position], now)
                position += 1
            if position == len(records) and not finished.done():
                finished.set_result(None)

        loop.add_reader(fd, on_timer)
        try:
            await finished
        finally:
            loop.remove_reader(fd)
            os.close(fd)
        return "timerfd"
    for record in records:
        delay = (record.intended_ns - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        client.dispatch(record, time.monotonic_ns())
    return "event loop timers"


async def run(url: str, *, rate: float, duration_s: float, warmup_s: float, body: bytes,
              headers: Sequence[tuple[str, str]], expect: Sequence[str], max_connections: int,
              drain_s: float, method: str = "POST") -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise SystemExit(f"only http:// URLs: {url}")
    loop = asyncio.get_running_loop()
    client = _Client(loop, parts.hostname, parts.port or 80, build_request(method, url, headers, body),
                     max_connections, [e.encode() for e in expect])
    offsets = intended_offsets_ns(rate, warmup_s + duration_s)
    start_ns = time.monotonic_ns() + 50_000_000  # 50 ms to get going
    records = [RequestRecord(start_ns + offset) for offset in offsets]
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    scheduler = await _schedule(client, records, round(1e9 / rate))
    window_start = start_ns + round(warmup_s * 1e9)
    window_end = window_start + round(duration_s * 1e9)
    deadline = window_end + round(drain_s * 1e9)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(client.all_done.wait(), max(0.0, (deadline - time.monotonic_ns()) / 1e9))
    deadline = min(deadline, time.monotonic_ns())  # everything finished earlier: no request is unfinished
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    client.close()
    report = summarise(records, window_start, window_end, deadline)
    report.update({
        "url": url,
        "total_ok": sum(1 for r in records if r.ok),  # warm-up included: the server's CPU time covers those too
        "offered_rps": rate,
        "warmup_s": warmup_s,
        "drain_s": drain_s,
        "scheduler": scheduler,
        "peak_connections": client.peak_connections,
        "max_connections": max_connections,
        "client_cpu_s": (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime),
        "client_wall_s": (time.monotonic_ns() - start_ns) / 1e9,
    })
    return report


def _header(spec: str) -> tuple[str, str]:
    name, sep, value = spec.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {spec!r}")
    return name.strip(), value.strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="offered requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds at the same rate before, not counted (2)")
    parser.add_argument("--method", default="POST")
    body = parser.add_mutually_exclusive_group()
    body.add_argument("--body", default="", help="request body (JSON)")
    body.add_argument("--body-file", help="file holding the request body")
    parser.add_argument("-H", "--header", type=_header, action="append", default=[], help="'Name: value'")
    parser.add_argument("--expect", action="append", default=[],
                        help="a string every successful response body must contain (repeatable)")
    parser.add_argument("--max-connections", type=int, default=256, help="connection pool limit (256)")
    parser.add_argument("--drain", type=float, default=5.0,
                        help="seconds to wait for answers after the window before counting them unfinished (5)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.warmup < 0 or args.max_connections < 1:
        parser.error("--rate, --duration and --max-connections must be positive, --warmup >= 0")
    payload = open(args.body_file, "rb").read() if args.body_file else args.body.encode()  # noqa: SIM115
    try:
        import uvloop
    except ImportError:
        uvloop = None
    coro = run(args.url, rate=args.rate, duration_s=args.duration, warmup_s=args.warmup, body=payload,
               headers=args.header, expect=args.expect, max_connections=args.max_connections, drain_s=args.drain,
               method=args.method.upper())
    report = uvloop.run(coro) if uvloop is not None else asyncio.run(coro)
    report["event_loop"] = "uvloop" if uvloop is not None else "asyncio"
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
