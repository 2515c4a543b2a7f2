"""Realtime transcription test helpers: a fake speech model in the catalog, PCM the fake engine hears, and a small
WebSocket client speaking the protocol (docs/realtime.md) to a live server."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from mistral_gateway.config import ModelEntry

__all__ = ["REALTIME_MODEL", "Client", "append", "fake_speech_models", "silence", "tone", "words_of"]

REALTIME_MODEL = "voxtral-mini-transcribe-realtime-2602"
PATH = "/v1/audio/transcriptions/realtime"
WAIT = 60.0  # a bound on every wait, so a broken server fails the test instead of hanging it


def fake_speech_models() -> list[ModelEntry]:
    """A fake speech entry standing for the voxtral families (the realtime one by its ``-latest`` name), and a
    fake chat model (a model without audio_transcription)."""
    return [ModelEntry(id="whisper-fake", engine="fake", capabilities=["audio_transcription", "audio"],
                       aliases=["voxtral-mini-latest", "voxtral-mini-transcribe-realtime-latest"]),
            ModelEntry(id="chat-fake", engine="fake", aliases=["mistral-small-latest"])]


def tone(seconds: float, rate: int = 16_000, amplitude: float = 0.3) -> bytes:
    """PCM s16le: a 220 Hz tone (the fake engine hears one word per loud second)."""
    count = round(seconds * rate)
    peak = int(amplitude * 32767)
    return struct.pack(f"<{count}h", *(int(peak * math.sin(2 * math.pi * 220 * i / rate)) for i in range(count)))


def silence(seconds: float, rate: int = 16_000) -> bytes:
    return bytes(2 * round(seconds * rate))


def append(audio: bytes) -> str:
    return json.dumps({"type": "input_audio.append", "audio": base64.b64encode(audio).decode()})


def words_of(events: list[dict[str, Any]], kind: str) -> list[str]:
    return [w for e in events if e["type"] == kind for w in e["text"].split()]


class Client:
    """One session: ``send`` messages, ``next`` event, ``until`` an event type (events are kept in ``events``)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def send(self, message: str | bytes | dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message) if isinstance(message, dict) else message)

    async def next(self) -> dict[str, Any]:
        event = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT))
        self.events.append(event)
        return event

    async def until(self, kind: str) -> dict[str, Any]:
        while True:
            event = await self.next()
            if event["type"] == kind:
                return event

    @classmethod
    @asynccontextmanager
    async def open(cls, base_url: str, token: str | None, model: str | None = REALTIME_MODEL, *,
                   lowcode: bool = False, **kwargs: Any) -> AsyncIterator[Client]:
        query = {"model": model} if model else {}
        headers = dict(kwargs.pop("additional_headers", {}))
        if token and lowcode:
            query["api_token"] = token
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        url = base_url.replace("http", "ws", 1) + ("/mistralai" if lowcode else "") + PATH
        if query:
            url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        async with connect(url, additional_headers=headers, open_timeout=WAIT, **kwargs) as ws:
            yield cls(ws)
