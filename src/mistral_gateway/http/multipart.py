"""Streaming multipart/form-data: the file part goes straight into a sink, never whole into memory.

Small text fields are collected (each capped); bytes are handed to the sink from a worker thread so large
uploads never block the event loop.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import unquote_to_bytes

import anyio.to_thread
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import Request

from mistral_gateway.echo import shorten
from mistral_gateway.errors import BadRequest, PayloadTooLarge
from mistral_gateway.http.bodies import declared_length

__all__ = ["FilePart", "MultipartForm", "Sink", "abort_sink", "read_multipart"]

# Every part counts, repeated names included (3,000 64 KB 'purpose' parts once held 190 MB); text fields are
# short values (purpose, expiry, visibility), so a few KB each and 16 KB in all are plenty.
MAX_PARTS = 64
MAX_FIELD_BYTES = 4 * 1024
MAX_TEXT_BYTES = 16 * 1024
MAX_PART_HEADER_BYTES = 8 * 1024  # all headers of one part
OVERHEAD_BYTES = 1024 * 1024  # headers and text fields on top of the file itself


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...
    def abort(self) -> None: ...


@dataclass
class FilePart:
    field: str
    filename: str | None
    content_type: str | None


@dataclass
class MultipartForm:
    fields: dict[str, list[str]] = field(default_factory=dict)
    file: FilePart | None = None

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None


@dataclass
class _State:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    name: str = ""
    is_file: bool = False
    value: bytearray = field(default_factory=bytearray)
    pending: list[bytes] = field(default_factory=list)
    error: Exception | None = None
    parts: int = 0
    header_bytes: int = 0
    text_bytes: int = 0

    def fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error


async def read_multipart(
    request: Request, *, file_field: str, open_sink: Callable[[], Sink], max_file_bytes: int,
    max_parts: int = MAX_PARTS, file_needs_name: bool = True,
) -> tuple[MultipartForm, Sink | None]:
    """Parse the body; the part named ``file_field`` (with a filename, unless ``file_needs_name`` is off) streams
    into ``open_sink()``; at most ``max_parts`` parts (an operation with array fields allows its arrays' length).

    On any error the sink is aborted before the exception propagates.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        raise BadRequest("expected a multipart/form-data body", code="INVALID_CONTENT_TYPE")
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequest("multipart body without a boundary", code="MALFORMED_MULTIPART")
    limit = max_file_bytes + OVERHEAD_BYTES
    length = declared_length(request)
    if length is not None and length > limit:
        raise PayloadTooLarge(f"upload exceeds the limit of {max_file_bytes} bytes", code="FILE_TOO_LARGE")

    form = MultipartForm()
    state = _State()
    sink: Sink | None = None

    def on_part_begin() -> None:
        state.headers = {}
        state.name, state.is_file = "", False
        state.value = bytearray()
        state.header_bytes = 0
        state.parts += 1
        if state.parts > max_parts:
            state.fail(BadRequest(f"too many form parts (at most {max_parts})", code="MALFORMED_MULTIPART"))

    def on_header_field(data: bytes, start: int, end: int) -> None:
        if _header_room(end - start):
            state.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        if _header_room(end - start):
            state.header_value += data[start:end]

    def _header_room(size: int) -> bool:
        state.header_bytes += size
        if state.header_bytes > MAX_PART_HEADER_BYTES:
            state.fail(BadRequest(f"a form part's headers exceed {MAX_PART_HEADER_BYTES} bytes",
                                  code="MALFORMED_MULTIPART"))
            return False
        return True

    def on_header_end() -> None:
        state.headers[bytes(state.header_field).lower()] = bytes(state.header_value)
        state.header_field, state.header_value = bytearray(), bytearray()

    def on_headers_finished() -> None:
        nonlocal sink
        _, disp = parse_options_header(state.headers.get(b"content-disposition", b""))
        state.name = disp.get(b"name", b"").decode("utf-8", "replace")
        filename = disp.get(b"filename")
        if filename is None:
            filename = _rfc5987_filename(state.headers.get(b"content-disposition", b""))
        if state.error is not None:
            return
        if state.name == file_field and (filename is not None or not file_needs_name):
            if form.file is not None:
                state.fail(BadRequest(f"only one '{file_field}' part is allowed", code="MALFORMED_MULTIPART"))
                return
            ctype = state.headers.get(b"content-type")
            form.file = FilePart(state.name, filename.decode("utf-8", "replace") if filename is not None else None,
                                 ctype.decode("latin-1") if ctype else None)
            sink = open_sink()
            state.is_file = True

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state.error is not None:
            return
        if state.is_file:
            state.pending.append(data[start:end])
            return
        state.value += data[start:end]
        state.text_bytes += end - start
        if len(state.value) > MAX_FIELD_BYTES:  # the value itself is never echoed, its name only briefly
            state.fail(PayloadTooLarge(f"form field {shorten(state.name)!r} exceeds {MAX_FIELD_BYTES} bytes"))
        elif state.text_bytes > MAX_TEXT_BYTES:
            state.fail(PayloadTooLarge(f"form text fields exceed {MAX_TEXT_BYTES} bytes in all"))

    def on_part_end() -> None:
        if state.error is None and not state.is_file and state.name:
            form.fields.setdefault(state.name, []).append(state.value.decode("utf-8", "replace"))

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
    })

    def flush(chunks: list[bytes]) -> None:
        assert sink is not None
        for chunk in chunks:
            sink.write(chunk)

    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"upload exceeds the limit of {max_file_bytes} bytes", code="FILE_TOO_LARGE")
            try:
                parser.write(chunk)
            except Exception as exc:  # python-multipart raises several types for bad input
                raise BadRequest(f"malformed multipart body: {exc}", code="MALFORMED_MULTIPART") from None
            if state.error is not None:
                raise state.error
            if state.pending:
                chunks, state.pending = state.pending, []
                await anyio.to_thread.run_sync(flush, chunks)
        try:
            parser.finalize()
        except Exception as exc:
            raise BadRequest(f"malformed multipart body: {exc}", code="MALFORMED_MULTIPART") from None
        if state.error is not None:
            raise state.error
        if state.pending:
            await anyio.to_thread.run_sync(flush, state.pending)
        if parser.state != MultipartState.END:
            raise BadRequest("truncated multipart body (no closing boundary)", code="MALFORMED_MULTIPART")
    except BaseException:
        if sink is not None:
            await abort_sink(sink)
        raise
    return form, sink


async def abort_sink(sink: Sink) -> None:
    """Abort off the event loop (on S3 it is a round trip), and shielded: a cancelled request still aborts."""
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(sink.abort)


_EXT_FILENAME = re.compile(rb"filename\*\s*=\s*([A-Za-z0-9_-]+)'[^']*'([^;\s]+)", re.IGNORECASE)


def _rfc5987_filename(disposition: bytes) -> bytes | None:
    """``filename*=UTF-8''na%C3%AFve.jsonl`` (RFC 5987/6266), which python-multipart does not decode."""
    m = _EXT_FILENAME.search(disposition)
    if m is None:
        return None
    charset = m.group(1).decode("ascii").lower()
    try:
        return unquote_to_bytes(m.group(2).decode("ascii")).decode(charset).encode("utf-8")
    except (LookupError, UnicodeDecodeError):
        return None
