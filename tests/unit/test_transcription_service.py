"""TranscriptionService on a scripted engine: a stream closed before its first segment was read still closes the
engine's segments (the decoding stops), and one read to its end closes them too."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from audio_support import tone_wav
from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import Segment, Transcript, TranscriptionOptions
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.errors import BadRequest, ServiceUnavailable
from mistral_gateway.protocol.audio import TranscriptionStreamRequest
from mistral_gateway.services.models import ModelCatalog
from mistral_gateway.services.transcription import AudioLimits, TranscriptionService, Upload


class Segments:
    """The engine's segments as a plain async iterator that records being closed (the real engine's contract:
    closing it stops the decoding), whether or not anything was read."""

    def __init__(self) -> None:
        self.closed = False
        self.read = 0

    def __aiter__(self) -> Segments:
        return self

    async def __anext__(self) -> Segment:
        if self.read == 2:
            raise StopAsyncIteration
        self.read += 1
        return Segment(self.read - 1.0, float(self.read), f" part{self.read}")

    async def aclose(self) -> None:
        self.closed = True


class Engine:
    def __init__(self) -> None:
        self.segments: list[Segments] = []

    async def transcribe(self, audio: Any, options: TranscriptionOptions) -> Transcript:
        self.segments.append(Segments())
        return Transcript("en", 2.0, self.segments[-1])


def service(tmp_path: Path, engine: Engine) -> TranscriptionService:
    entry = ModelEntry(id="speech", engine="fake", capabilities=["audio_transcription", "audio"])
    settings = Settings(data_dir=tmp_path, models=[entry], bootstrap_dev_token=False)
    engines = EngineManager(settings, loaders={("fake", "speech"): lambda *_: engine})
    return TranscriptionService(ModelCatalog([entry]), engines, files=None,  # type: ignore[arg-type]
                                limits=AudioLimits(max_bytes=10**6, max_seconds=60))


def test_a_stream_closed_unread_closes_the_engines_segments(tmp_path: Path) -> None:
    engine = Engine()
    svc = service(tmp_path, engine)
    request = TranscriptionStreamRequest(model="speech")

    async def run() -> list[str]:
        events = await svc.stream("ws", request, Upload(tone_wav([True, True])))
        assert not engine.segments[0].closed
        await events.aclose()  # the client left before the first event was sent
        whole = await svc.stream("ws", request, Upload(tone_wav([True, True])))
        return [event.type async for event in whole]

    types = asyncio.run(run())
    assert engine.segments[0].closed and engine.segments[0].read == 0
    assert types == ["transcription.language", "transcription.text.delta", "transcription.text.delta",
                     "transcription.done"]
    assert engine.segments[1].closed


def test_entries_that_cannot_transcribe_here_are_refused_clearly(tmp_path: Path) -> None:
    routed = ModelEntry(id="routed", engine="none", capabilities=["audio_transcription"],
                        routes=[{"upstream": "mistral"}])
    misconfigured = ModelEntry(id="odd", engine="llama.cpp", path="/nowhere.gguf", capabilities=["audio_transcription"])
    settings = Settings(data_dir=tmp_path, models=[routed, misconfigured], bootstrap_dev_token=False)
    svc = TranscriptionService(ModelCatalog([routed, misconfigured]), EngineManager(settings),
                               files=None, limits=AudioLimits(max_bytes=10**6, max_seconds=60))  # type: ignore[arg-type]
    request = TranscriptionStreamRequest(model="routed")
    with pytest.raises(BadRequest, match="no local speech engine"):
        asyncio.run(svc.stream("ws", request, Upload(tone_wav([True]))))
    with pytest.raises(ServiceUnavailable, match="could not be loaded") as info:
        asyncio.run(svc.transcribe_bytes("odd", tone_wav([True])))
    assert info.value.status == 503
