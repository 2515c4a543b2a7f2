"""What handlers return besides JSON models: binary downloads, SSE streams, empty 204s."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from pydantic import BaseModel

__all__ = ["BinaryResult", "NoContent", "RawEvents", "RawJSON", "StreamResult"]


@dataclass(frozen=True, slots=True)
class BinaryResult:
    chunks: Iterator[bytes]  # blocking iterator: read in a worker thread
    filename: str
    size: int | None = None
    media_type: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class StreamResult:
    """Server-sent events: each model becomes ``data: <json>``; the endpoint frames them and renders errors
    raised mid-stream in the caller's dialect."""

    chunks: AsyncIterator[BaseModel]
    done_marker: bool = True  # chat/FIM end with ``data: [DONE]``; conversations and transcription do not


@dataclass(frozen=True, slots=True)
class NoContent:
    pass


@dataclass(frozen=True, slots=True)
class RawJSON:
    """A native body already rendered (cached hot paths); the dialect still wraps it."""

    body: bytes


@dataclass(frozen=True, slots=True)
class RawEvents:
    """Server-sent events already framed (an upstream's stream), relayed chunk by chunk as they arrive."""

    chunks: AsyncIterator[bytes]
