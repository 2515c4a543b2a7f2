"""Realtime transcription over a WebSocket (``GET /v1/audio/transcriptions/realtime``): the client messages and the
server events of the protocol the official SDK speaks (``mistralai.extra.realtime``; docs/realtime.md).

Client messages are JSON text frames validated strictly (``additionalProperties: false`` in Mistral's spec, and a
message this server would silently ignore is one whose effect the client would wrongly assume). Server events are
plain dicts shaped as the SDK's models (``RealtimeTranscriptionSessionCreated``, ``TranscriptionStreamTextDelta``...).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

__all__ = ["ENCODINGS", "MAX_APPEND_BYTES", "MAX_CONTEXT_TERMS", "AudioAppend", "AudioEnd", "AudioFlush",
           "AudioFormat", "ClientMessage", "SessionUpdate", "SessionUpdatePayload", "TurnDetection", "client_message",
           "error_event"]

ENCODINGS = ("pcm_s16le", "pcm_s32le", "pcm_f16le", "pcm_f32le", "pcm_mulaw", "pcm_alaw")
MAX_APPEND_BYTES = 262_144  # decoded audio per input_audio.append (the SDK model's documented maximum)
MAX_CONTEXT_TERMS = 100  # context_bias phrases per session (they become the decoder's prompt)
_B64_LIMIT = (MAX_APPEND_BYTES + 2) // 3 * 4  # its base64 length


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AudioFormat(_Strict):
    encoding: Literal["pcm_s16le", "pcm_s32le", "pcm_f16le", "pcm_f32le", "pcm_mulaw", "pcm_alaw"]
    sample_rate: int = Field(ge=8000, le=96000)


class TurnDetection(_Strict):
    """Accepted so the message validates as the SDK sends it; the session refuses it (no turn detection here)."""

    start_threshold: float | None = Field(None, ge=0, le=1)
    eager_end_threshold: float | None = Field(None, ge=0, le=1)
    end_threshold: float | None = Field(None, ge=0, le=1)
    min_silence_ms: int | None = Field(None, ge=0, le=60_000)
    end_timeout_ms: int | None = Field(None, ge=0, le=600_000)


Term = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class SessionUpdatePayload(_Strict):
    audio_format: AudioFormat | None = None
    target_streaming_delay_ms: int | None = Field(None, ge=0, le=60_000)
    diarize: bool | None = None
    context_bias: list[Term] | None = Field(None, max_length=MAX_CONTEXT_TERMS)
    language: str | None = Field(None, pattern=r"^[a-z]{2}$")
    speaker_references: dict[Annotated[str, StringConstraints(max_length=100)], str] | None = Field(None, max_length=16)
    turn_detection: TurnDetection | None = None


class SessionUpdate(_Strict):
    type: Literal["session.update"]
    session: SessionUpdatePayload


class AudioAppend(_Strict):
    type: Literal["input_audio.append"]
    audio: str = Field(max_length=_B64_LIMIT)


class AudioFlush(_Strict):
    type: Literal["input_audio.flush"]


class AudioEnd(_Strict):
    type: Literal["input_audio.end"]


ClientMessage = Annotated[SessionUpdate | AudioAppend | AudioFlush | AudioEnd, Field(discriminator="type")]
client_message: TypeAdapter[SessionUpdate | AudioAppend | AudioFlush | AudioEnd] = TypeAdapter(ClientMessage)


def error_event(message: str, code: int) -> dict[str, Any]:
    """The protocol's error event (``RealtimeTranscriptionError``): ``code`` is the HTTP status the same failure
    has elsewhere in this API (400 bad message, 413 too large, 503 busy...)."""
    return {"type": "error", "error": {"message": message, "code": code}}
