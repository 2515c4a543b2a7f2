"""Reading answers: the ``{"data": ...}`` envelope into the operation's response model, server-sent events into
typed chunks, and binary downloads into bytes or a file."""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any, Generic, TypeVar
from urllib.parse import unquote

import httpx
from pydantic import TypeAdapter

from mistral_gateway.client.errors import StreamError
from mistral_gateway.client.progress import Progress
from mistral_gateway.registry import Operation

__all__ = ["AsyncStream", "DownloadSink", "SSEDecoder", "Stream", "filename_from", "parse_json", "unwrap"]

T = TypeVar("T")


@functools.cache
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)  # also reads Annotated unions such as ModelCard (base | fine-tuned)


def unwrap(body: Any) -> Any:
    """The LowCodeAPI dialect wraps every JSON success as exactly ``{"data": ...}``."""
    if isinstance(body, dict) and set(body) == {"data"}:
        return body["data"]
    return body


def parse_json(op: Operation, response: httpx.Response, raw: bytes) -> Any:
    """The unwrapped ``data`` as the operation's response model; None for an empty (204) answer; plain JSON for
    operations the registry gives no response model (those not built yet)."""
    if response.status_code == 204 or not raw.strip():
        return None
    data = unwrap(json.loads(raw))
    if op.response is None:
        return data
    return _adapter(op.response).validate_python(data)


class SSEDecoder:
    """Incremental ``text/event-stream`` parser: feed it lines, get each event's ``data`` when the event ends."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        if line == "":
            return self.flush()
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None

    def flush(self) -> str | None:
        if not self._data:
            return None
        payload, self._data = "\n".join(self._data), []
        return payload


_DONE = object()


def _decode(payload: str, model: type | None) -> Any:
    if payload.strip() == "[DONE]":
        return _DONE
    event = json.loads(payload)
    inner = event.get("data") if isinstance(event, dict) else None
    if isinstance(inner, dict) and isinstance(inner.get("error"), dict):  # an error raised mid-stream
        error = inner["error"]
        raise StreamError(str(error.get("message") or "stream failed"), status=200, code=error.get("code"),
                          detail=error.get("detail"), body=event)
    return _adapter(model).validate_python(event) if model is not None else event


_NOTHING = object()


class _Events:
    """SSE lines in, typed events out: what ``Stream`` and ``AsyncStream`` share (they differ only in how lines
    arrive). ``feed`` returns an event, ``_DONE`` at ``[DONE]``, or ``_NOTHING`` while an event is incomplete."""

    def __init__(self, model: type | None) -> None:
        self._decoder = SSEDecoder()
        self._model = model

    def feed(self, line: str) -> Any:
        payload = self._decoder.feed(line)
        return _NOTHING if payload is None else _decode(payload, self._model)

    def end(self) -> Any:
        """The event left without a closing blank line, if any (``_NOTHING`` otherwise)."""
        payload = self._decoder.flush()
        item = _NOTHING if payload is None else _decode(payload, self._model)
        return _NOTHING if item is _DONE else item


class Stream(Generic[T]):
    """The events of one SSE answer, typed. Iterate once; the connection closes at the end, on ``close()`` or
    when leaving a ``with`` block (stopping early stops generation on the server)."""

    def __init__(self, response: httpx.Response, op: Operation) -> None:
        self.response = response
        self._model = op.chunk  # None: plain dicts

    def __iter__(self) -> Iterator[T]:
        events = _Events(self._model)
        try:
            for line in self.response.iter_lines():
                item = events.feed(line)
                if item is _DONE:
                    return
                if item is not _NOTHING:
                    yield item
            if (item := events.end()) is not _NOTHING:
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> Stream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStream(Generic[T]):
    """``async for`` over the events of one SSE answer; see ``Stream``."""

    def __init__(self, response: httpx.Response, op: Operation) -> None:
        self.response = response
        self._model = op.chunk  # None: plain dicts

    async def __aiter__(self) -> AsyncIterator[T]:
        events = _Events(self._model)
        try:
            async for line in self.response.aiter_lines():
                item = events.feed(line)
                if item is _DONE:
                    return
                if item is not _NOTHING:
                    yield item
            if (item := events.end()) is not _NOTHING:
                yield item
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        await self.response.aclose()

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


_FILENAME_STAR = re.compile(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", re.IGNORECASE)
_FILENAME = re.compile(r'filename\s*=\s*"([^"]*)"|filename\s*=\s*([^;]+)', re.IGNORECASE)


def filename_from(headers: httpx.Headers) -> str | None:
    """The file name a ``Content-Disposition`` header suggests, reduced to a bare name (no directories)."""
    value = headers.get("content-disposition", "")
    if m := _FILENAME_STAR.search(value):
        name = unquote(m.group(2).strip(), encoding=m.group(1) or "utf-8", errors="replace")
    elif m := _FILENAME.search(value):
        name = (m.group(1) if m.group(1) is not None else m.group(2)).strip()
    else:
        return None
    name = Path(name.replace("\\", "/")).name
    return name if name not in ("", ".", "..") else None


class DownloadSink:
    """Where a binary answer goes: returned as bytes (``to=None``), written to a path (a directory: the name from
    ``Content-Disposition``) or to an open binary file. A failed download removes the file it was writing."""

    def __init__(self, response: httpx.Response, to: str | os.PathLike[str] | IO[bytes] | None,
                 progress: Progress | None) -> None:
        length = response.headers.get("content-length")
        self.total = int(length) if length and length.isdigit() else None
        self.done = 0
        self.progress = progress
        self._buffer: bytearray | None = None
        self._owned: IO[bytes] | None = None
        self.path: Path | None = None
        if to is None:
            self._buffer = bytearray()
            self._out: Any = self._buffer
        elif isinstance(to, (str, os.PathLike)):
            path = Path(to).expanduser()
            if path.is_dir():
                path = path / (filename_from(response.headers) or "download")
            self.path = path
            self._owned = self._out = open(path, "wb")  # noqa: SIM115 - closed in finish()/abort()
        else:
            self._out = to

    def write(self, chunk: bytes) -> None:
        if isinstance(self._out, bytearray):
            self._out.extend(chunk)
        else:
            self._out.write(chunk)
        self.done += len(chunk)
        if self.progress is not None:
            self.progress(self.done, self.total)

    def finish(self) -> bytes | Path | int:
        """bytes (no ``to``), the Path written, or the byte count written to a caller's file."""
        if self._owned is not None:
            self._owned.close()
        if self._buffer is not None:
            return bytes(self._buffer)
        return self.path if self.path is not None else self.done

    def abort(self) -> None:
        if self._owned is not None:
            self._owned.close()
            if self.path is not None:
                self.path.unlink(missing_ok=True)
