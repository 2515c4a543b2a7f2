"""Audio test helpers: WAV bytes whose loud seconds the fake speech engine "hears" as words, and a fake speech
model (the voxtral ids) for fake-engine catalogs."""

from __future__ import annotations

import io
import math
import wave
from collections.abc import Sequence

from mistral_gateway.config import ModelEntry

__all__ = ["SPEECH_MODEL", "speech_entry", "tone_wav", "with_fake_speech"]

SPEECH_MODEL = "voxtral-mini-latest"


def tone_wav(pattern: Sequence[bool], *, rate: int = 16_000, channels: int = 1) -> bytes:
    """One second per item: a 440 Hz tone (heard) or silence (skipped by the fake engine), 16-bit PCM."""
    frames = bytearray()
    for loud in pattern:
        for i in range(rate):
            value = int(12_000 * math.sin(2 * math.pi * 440 * i / rate)) if loud else 0
            frames += value.to_bytes(2, "little", signed=True) * channels
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(bytes(frames))
    return out.getvalue()


def speech_entry() -> ModelEntry:
    return ModelEntry(id="voxtral-mini-2507", aliases=[SPEECH_MODEL, "voxtral-small-latest"], engine="fake",
                      capabilities=["audio_transcription", "audio", "completion_chat"], max_context_length=448,
                      description="test: the fake speech engine; chat is a cascade")


def with_fake_speech(models: list[ModelEntry]) -> list[ModelEntry]:
    """``models`` (already on fake engines) plus the fake speech entry, unless one of them serves transcription
    (the default catalog's speech model, switched to the fake engine)."""
    if any("audio_transcription" in m.capabilities and m.engine == "fake" for m in models):
        return models
    return [*models, speech_entry()]
