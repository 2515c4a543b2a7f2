"""app.conversations: an upstream's framed chat stream read back as chunks (a conversation whose model is routed
to an upstream), whatever the network's chunking, and a clear 502 for an event that is no chat chunk."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mistral_gateway.app.conversations import chat_chunks
from mistral_gateway.errors import BadGateway

CHUNK = b'{"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [{"index": 0, ' \
        b'"delta": {"content": "%s"}}]}'


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at:at + size]


def read(data: bytes, size: int) -> list[str]:
    async def go() -> list[str]:
        return [c.choices[0].delta.content async for c in chat_chunks(pieces(data, size))]
    return asyncio.run(go())


@pytest.mark.parametrize("size", [1, 7, 10_000])
def test_framed_events_become_chunks(size: int) -> None:
    stream = (b": keep-alive\n\n" + b"data: " + CHUNK % b"Hel" + b"\r\n\r\n" + b"data:" + CHUNK % b"lo" + b"\n\n"
              + b"data: [DONE]\n\n")
    assert read(stream, size) == ["Hel", "lo"]


def test_an_unreadable_event_is_a_bad_gateway() -> None:
    with pytest.raises(BadGateway):
        read(b"data: {\"not\": \"a chunk\"}\n\n", 100)
