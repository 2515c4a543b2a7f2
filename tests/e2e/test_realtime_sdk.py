"""Realtime transcription through the official SDK (mistralai 3.7.0: ``client.audio.realtime``, its
``transcribe_stream`` and ``connect``) against a live server on loopback, with the fake speech engine: every event
parses into the SDK's typed models (none falls back to ``UnknownRealtimeEvent``), session fields, errors as the SDK
raises them, the LowCodeAPI dialect, and the SDK's own example script with only the server URL changed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mistralai.client import Mistral
from mistralai.client.models import (
    AudioFormat,
    RealtimeTranscriptionError,
    RealtimeTranscriptionSessionCreated,
    RealtimeTranscriptionSessionUpdated,
    TranscriptionStreamDone,
    TranscriptionStreamLanguage,
    TranscriptionStreamSegmentDelta,
    TranscriptionStreamTextDelta,
)
from mistralai.extra.exceptions import RealtimeTranscriptionException, RealtimeTranscriptionWSError
from mistralai.extra.realtime import UnknownRealtimeEvent

from mistral_gateway.config import Settings
from mistral_gateway.engines.fake import _WORDS
from realtime_support import REALTIME_MODEL, fake_speech_models, silence, tone
from support import LiveServer, serving

pytestmark = pytest.mark.e2e

PCM16 = AudioFormat(encoding="pcm_s16le", sample_rate=16000)
# The SDK's repository (a bare git dir): its examples are acceptance tests, run unchanged but for the server URL.
SDK_REPO = Path(os.environ.get("MISTRAL_SDK_REPO", "/work/.mirror/mistralai+client-python/repo"))
EXAMPLE = "examples/mistral/audio/async_realtime_transcription_stream.py"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("realtime-sdk") / "data", bootstrap_dev_token=False,
                        models=fake_speech_models())
    with serving(settings) as (server, _services, token):
        yield server, token


async def chunks(audio: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for at in range(0, len(audio), size):
        yield audio[at:at + size]


def speech() -> bytes:
    return tone(2.0) + silence(1.0) + tone(2.0)


def test_transcribe_stream(live: tuple[LiveServer, str]) -> None:
    server, token = live

    async def run() -> list[Any]:
        async with Mistral(api_key=token, server_url=server.base_url) as client:
            return [e async for e in client.audio.realtime.transcribe_stream(
                chunks(speech()), REALTIME_MODEL, audio_format=PCM16, target_streaming_delay_ms=500)]

    events = asyncio.run(run())
    assert not [e for e in events if isinstance(e, UnknownRealtimeEvent)], events
    assert isinstance(events[0], RealtimeTranscriptionSessionCreated)
    assert isinstance(events[1], RealtimeTranscriptionSessionUpdated)  # the SDK sent audio_format and the delay
    assert events[1].session.target_streaming_delay_ms == 500
    done = events[-1]
    assert isinstance(done, TranscriptionStreamDone)
    deltas = [e.text for e in events if isinstance(e, TranscriptionStreamTextDelta)]
    assert "".join(deltas) == done.text and len(done.text.split()) == 4
    assert set(done.text.split()) <= set(_WORDS) and done.language == "en" and done.model == REALTIME_MODEL
    assert done.usage.prompt_audio_seconds == 5
    assert [isinstance(e, TranscriptionStreamLanguage) for e in events].index(True) < \
        [isinstance(e, TranscriptionStreamTextDelta) for e in events].index(True)
    segments = [e for e in events if isinstance(e, TranscriptionStreamSegmentDelta)]
    assert segments and done.segments is not None
    assert [(s.text, s.start, s.end) for s in segments] == [(s.text, s.start, s.end) for s in done.segments]


def test_connect_with_session_fields(live: tuple[LiveServer, str]) -> None:
    server, token = live

    async def run() -> tuple[Any, list[Any]]:
        async with Mistral(api_key=token, server_url=server.base_url) as client:
            connection = await client.audio.realtime.connect(
                "voxtral-mini-latest", audio_format=AudioFormat(encoding="pcm_s16le", sample_rate=24000),
                language="de", context_bias=["Mistral"], diarize=False)
            async with connection:
                await connection.send_audio(tone(1.0, rate=24000) + silence(0.2, rate=24000))
                await connection.flush_audio()
                await connection.end_audio()
                events = []
                async for event in connection:
                    events.append(event)
                    if isinstance(event, TranscriptionStreamDone):
                        break
                return connection.session, events

    session, events = asyncio.run(run())
    assert session.language == "de" and session.audio_format.sample_rate == 24000
    assert session.context_bias == ["Mistral"]
    assert isinstance(events[-1], TranscriptionStreamDone) and events[-1].text == _WORDS[0]
    assert events[-1].language == "de"


def test_errors_as_the_sdk_reports_them(live: tuple[LiveServer, str]) -> None:
    server, token = live

    async def stream(**kwargs: Any) -> list[Any]:
        async with Mistral(api_key=kwargs.pop("key", token), server_url=server.base_url) as client:
            return [e async for e in client.audio.realtime.transcribe_stream(
                chunks(tone(1.0)), kwargs.pop("model", REALTIME_MODEL), **kwargs)]

    events = asyncio.run(stream(diarize=True))  # the session refuses it; the SDK stops at the error
    assert isinstance(events[-1], RealtimeTranscriptionError) and events[-1].error.code == 400
    assert "diarize" in str(events[-1].error.message)
    with pytest.raises(RealtimeTranscriptionWSError) as unknown:
        asyncio.run(stream(model="no-such-model"))
    assert unknown.value.code == 404 and "no-such-model" in str(unknown.value)
    with pytest.raises(RealtimeTranscriptionException) as refused:
        asyncio.run(stream(key="at_" + "x" * 43))
    assert "401" in str(refused.value)


def test_lowcode_dialect(live: tuple[LiveServer, str]) -> None:
    """The SDK against the LowCodeAPI prefix: the token goes in ``x-api-token`` (the SDK cannot add ?api_token)."""
    server, token = live

    async def run() -> list[Any]:
        async with Mistral(api_key="unused", server_url=server.base_url + "/mistralai") as client:
            return [e async for e in client.audio.realtime.transcribe_stream(
                chunks(tone(1.0)), REALTIME_MODEL, http_headers={"x-api-token": token})]

    events = asyncio.run(run())
    assert isinstance(events[-1], TranscriptionStreamDone) and events[-1].text == _WORDS[0]


def test_the_sdk_example_unchanged(live: tuple[LiveServer, str], tmp_path: Path) -> None:
    server, token = live
    try:
        source = subprocess.run(["git", f"--git-dir={SDK_REPO}", "show", f"HEAD:{EXAMPLE}"], check=True,
                                capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"the SDK repository is not at {SDK_REPO} (set MISTRAL_SDK_REPO): {exc}")
    script, audio = tmp_path / "example.py", tmp_path / "speech.pcm"
    script.write_text(source)
    audio.write_bytes(speech())  # raw PCM s16le 16 kHz: the example sends .pcm files as they are
    env = {**os.environ, "MISTRAL_API_KEY": token}
    run = subprocess.run([sys.executable, str(script), str(audio), "--base-url", server.base_url,
                          "--chunk-delay", "0"], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    words = run.stdout.split()
    assert len(words) == 4 and set(words) <= set(_WORDS), run.stdout
