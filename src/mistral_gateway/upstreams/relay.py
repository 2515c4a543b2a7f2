"""Relaying an upstream's SSE stream: raw bytes as they arrive (native kinds) or event by event through a
translator (``openai``), noting the usage the last events carry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any, Protocol

import orjson

from mistral_gateway.upstreams.client import Exchange

__all__ = ["Usage", "UsageSink", "relay_raw", "relay_translated", "sse_payloads", "usage_from_tail", "usage_sink"]

_TAIL = 8192  # bytes kept from the end of a raw stream: the usage event is among the last ones


class UsageSink(Protocol):
    def __call__(self, prompt_tokens: int, completion_tokens: int) -> None: ...


class Usage(Protocol):
    """Where routed requests report what they used (the HTTP layer's per-request meter satisfies it)."""

    model: str | None
    backend: str
    prompt_tokens: int
    completion_tokens: int


def usage_sink(usage: Usage) -> UsageSink:
    def record(prompt_tokens: int, completion_tokens: int) -> None:
        usage.prompt_tokens = prompt_tokens
        usage.completion_tokens = completion_tokens

    return record


async def relay_raw(exchange: Exchange, on_usage: UsageSink) -> AsyncIterator[bytes]:
    """The upstream's bytes unchanged, each chunk forwarded the moment it arrives."""
    tail = b""
    async with aclosing(exchange.chunks()) as chunks:  # closed at once when the caller stops (client gone)
        async for chunk in chunks:
            tail = (tail + chunk)[-_TAIL:]
            yield chunk
    usage = usage_from_tail(tail)
    if usage is not None:
        on_usage(*usage)


async def relay_translated(exchange: Exchange, translate: Callable[[dict[str, Any] | None], list[dict[str, Any]]],
                           on_usage: UsageSink) -> AsyncIterator[bytes]:
    """Event by event: ``translate(payload)`` gives the events to send (``translate(None)`` at the end)."""
    async with aclosing(sse_payloads(exchange.chunks())) as payloads:
        async for data in payloads:
            if data == b"[DONE]":
                break  # not waiting for the body's end: an upstream that keeps it open would hold our [DONE]
            try:
                payload = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue  # comments and keep-alives some servers interleave
            for event in translate(payload):
                yield _event(event, on_usage)
    for event in translate(None):
        yield _event(event, on_usage)
    yield b"data: [DONE]\n\n"


def _event(event: dict[str, Any], on_usage: UsageSink) -> bytes:
    usage = event.get("usage")
    if usage:
        on_usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
    return b"data: " + orjson.dumps(event) + b"\n\n"


async def sse_payloads(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The ``data`` of each server-sent event (multi-line data joined with newlines). Closes ``chunks`` when done
    or closed itself."""
    buffer = b""
    try:
        async for chunk in chunks:
            buffer += chunk.replace(b"\r\n", b"\n")
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                data = _data(event)
                if data is not None:
                    yield data
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
    data = _data(buffer)
    if data is not None:
        yield data


def _data(event: bytes) -> bytes | None:
    lines = [line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def usage_from_tail(tail: bytes) -> tuple[int, int] | None:
    """The usage of the last event that has one, from the end of a raw SSE stream."""
    for event in reversed(tail.replace(b"\r\n", b"\n").split(b"\n\n")):
        if b'"usage"' not in event:
            continue
        data = _data(event)
        try:
            usage = orjson.loads(data).get("usage") if data else None
        except (orjson.JSONDecodeError, AttributeError):
            continue  # the event was cut by the tail window, or is not an object
        if isinstance(usage, dict):
            return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return None
