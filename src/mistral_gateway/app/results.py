"""What operations return besides JSON models: binary downloads, SSE streams, empty 204s; and errors as data."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel

from mistral_gateway.errors import GatewayError, ValidationFailed

__all__ = ["BinaryResult", "NoContent", "RawEvents", "RawJSON", "Result", "StreamResult", "error_body", "json_of"]

C = TypeVar("C", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class BinaryResult:
    chunks: Iterator[bytes]  # blocking iterator: read in a worker thread
    filename: str
    size: int | None = None
    media_type: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class StreamResult(Generic[C]):
    """Server-sent events: each model becomes ``data: <json>``; the endpoint frames them and renders errors
    raised mid-stream in the caller's dialect. An operation declares its chunk model (``StreamResult[Chunk]``),
    checked against its registry row's ``chunk`` at startup (``app.kinds``)."""

    chunks: AsyncIterator[C]
    done_marker: bool = True  # chat/FIM end with ``data: [DONE]``; conversations and transcription do not
    event_names: bool = False  # each event also gets an ``event: <its type>`` line (transcription: the SDK needs it)


@dataclass(frozen=True, slots=True)
class NoContent:
    pass


@dataclass(frozen=True, slots=True)
class RawJSON:
    """A native body already rendered (cached hot paths); the dialect still wraps it. ``status``: when it is not
    the row's (an upload that found the document already there: 200, not 201)."""

    body: bytes
    status: int | None = None


@dataclass(frozen=True, slots=True)
class RawEvents:
    """Server-sent events already framed (an upstream's stream), relayed chunk by chunk as they arrive."""

    chunks: AsyncIterator[bytes]


# What an operation returns: a pydantic model or plain JSON data, or one of the above.
Result = BaseModel | RawJSON | StreamResult | RawEvents | BinaryResult | NoContent | Any


def error_body(err: GatewayError) -> dict[str, Any]:
    """An error in the native dialect's shape (422: FastAPI's ``{"detail": [...]}``)."""
    if isinstance(err, ValidationFailed):
        return {"detail": err.detail}
    return {"object": "error", "message": err.message, "type": err.type, "param": err.param, "code": err.code}


def json_of(result: object) -> Any:
    """A JSON result as plain data (batch output lines); None for ``NoContent``."""
    if isinstance(result, BaseModel):
        return orjson.loads(result.model_dump_json())
    if isinstance(result, RawJSON):
        return orjson.loads(result.body)
    if isinstance(result, NoContent):
        return None
    if isinstance(result, (StreamResult, RawEvents, BinaryResult)):
        raise TypeError(f"{type(result).__name__} is not a JSON result")
    return result
