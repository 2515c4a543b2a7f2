"""Realtime transcription on the real speech model (Whisper base via faster-whisper, ``voxtral-mini-latest``) over a
WebSocket on loopback, with speech made by espeak-ng at its own rate (22.05 kHz: the session resamples).

The client behaves as a microphone: speech, then silence, in half-second chunks, reading what has arrived between
chunks, until the first ``transcription.text.delta`` (bounded); only then flush and end. So the first partial text
arrives before the audio is over by construction (an ordering, not a timing); the final text must match the spoken
words (low WER), equal the concatenated deltas, with segments in order."""

from __future__ import annotations

import asyncio
import json
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mistral_gateway.config import Settings, default_models
from realtime_support import Client, append, silence
from speech_material import ESPEAK_MISSING, espeak, espeak_available, wer
from support import LiveServer, serving

pytestmark = [pytest.mark.slow, pytest.mark.e2e,
              pytest.mark.skipif(not espeak_available(), reason=ESPEAK_MISSING)]

TEXT = "Please call me back when you have a moment. I would like to talk about the project."
CHUNK_S = 0.5
MAX_SILENCE_CHUNKS = 60  # 30 s of "microphone" silence at most while waiting for the first partial text


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[tuple[LiveServer, str]]:
    speech = [m for m in default_models() if "audio_transcription" in m.capabilities]
    settings = Settings(data_dir=tmp_path_factory.mktemp("realtime-real") / "data", weights_path=weights_dir,
                        bootstrap_dev_token=False, models=speech)
    with serving(settings) as (server, _services, token):
        yield server, token


def test_partial_then_final_text_on_real_speech(live: tuple[LiveServer, str], tmp_path: Path) -> None:
    server, token = live
    with wave.open(str(_wav(tmp_path))) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    step = 2 * round(rate * CHUNK_S)
    chunks = [pcm[i:i + step] for i in range(0, len(pcm), step)] + [silence(CHUNK_S, rate)] * MAX_SILENCE_CHUNKS

    async def session() -> tuple[list[dict[str, Any]], int]:
        async with Client.open(server.base_url, token, "voxtral-mini-latest") as c:
            await c.next()
            await c.send({"type": "session.update", "session": {
                "audio_format": {"encoding": "pcm_s16le", "sample_rate": rate}, "language": "en"}})
            await c.until("session.updated")
            for chunk in chunks:
                await c.send(append(chunk))
                await _drain(c)
                if any(e["type"] == "transcription.text.delta" for e in c.events):
                    break
            ended_at = len(c.events)  # events received before input_audio.end was sent
            await c.send({"type": "input_audio.flush"})
            await c.send(json.dumps({"type": "input_audio.end"}))
            await c.until("transcription.done")
            return c.events, ended_at

    events, ended_at = asyncio.run(session())
    kinds = [e["type"] for e in events]
    assert "error" not in kinds, events
    assert "transcription.text.delta" in kinds[:ended_at]  # partial text while audio was still being sent
    done = events[-1]
    deltas = "".join(e["text"] for e in events if e["type"] == "transcription.text.delta")
    assert done["text"] == deltas and done["language"] == "en"
    assert wer(TEXT, done["text"]) <= 0.2, done["text"]
    segments = [(s["start"], s["end"]) for s in done["segments"]]
    assert segments and segments == sorted(segments) and all(a <= b for a, b in segments)
    assert " ".join(s["text"] for s in done["segments"]) == done["text"]


def _wav(tmp_path: Path) -> Path:
    path = tmp_path / "speech.wav"
    espeak(TEXT, path)
    return path


async def _drain(c: Client) -> None:
    """Take the events that arrive within a moment (a microphone's pace: the session decodes meanwhile)."""
    while True:
        try:
            c.events.append(json.loads(await asyncio.wait_for(c.ws.recv(), CHUNK_S / 2)))
        except TimeoutError:
            return
