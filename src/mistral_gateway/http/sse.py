"""Server-sent events framing; an error raised mid-stream becomes one last event in the dialect's error shape."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import orjson

from mistral_gateway.app.results import StreamResult
from mistral_gateway.errors import GatewayError, InternalError
from mistral_gateway.http.dialects import Dialect

__all__ = ["relay_events", "sse_events"]

log = logging.getLogger("mistral_gateway.http")


async def sse_events(result: StreamResult, dialect: Dialect) -> AsyncIterator[bytes]:
    error = b"event: error\n" if result.event_names else b""
    try:
        async for chunk in result.chunks:
            named = b"event: " + chunk.type.encode() + b"\n" if result.event_names else b""
            yield named + b"data: " + chunk.model_dump_json().encode() + b"\n\n"
        if result.done_marker:
            yield b"data: [DONE]\n\n"
    except GatewayError as err:
        yield error + b"data: " + orjson.dumps(dialect.error_body(err)) + b"\n\n"
    except Exception:
        log.exception("stream failed")
        yield error + b"data: " + orjson.dumps(dialect.error_body(InternalError("internal server error"))) + b"\n\n"
    finally:
        close = getattr(result.chunks, "aclose", None)
        if close is not None:
            await close()  # stops generation at once when the client went away


async def relay_events(chunks: AsyncIterator[bytes], dialect: Dialect) -> AsyncIterator[bytes]:
    """Relayed bytes as they come; a failure after the stream began ends it with an error event."""
    try:
        async for chunk in chunks:
            yield chunk
    except GatewayError as err:
        yield b"\n\ndata: " + orjson.dumps(dialect.error_body(err)) + b"\n\n"
    except Exception:
        log.exception("relayed stream failed")
        yield b"\n\ndata: " + orjson.dumps(dialect.error_body(InternalError("internal server error"))) + b"\n\n"
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()  # closes the upstream response: a client disconnect cancels the upstream request
