"""Transcription models (Mistral spec: AudioTranscriptionRequest[Stream], TranscriptionResponse,
TranscriptionSegmentChunk, the TranscriptionStream* events) and the multipart form they are read from.

The request arrives as multipart/form-data: text fields (arrays as repeated fields), plus the audio itself as a
``file`` part, which is not part of the model (the handler streams it aside). A batch line carries the same fields
as JSON, with ``file_url`` or ``file_id``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, StrictBool, StringConstraints

from mistral_gateway.errors import BadRequest
from mistral_gateway.protocol.common import RequestModel, ResponseModel

__all__ = ["FORM_ARRAYS", "MAX_CONTEXT_BIAS", "TimestampGranularity", "TranscriptionDone", "TranscriptionEvent",
           "TranscriptionLanguage", "TranscriptionRequest", "TranscriptionResponse", "TranscriptionSegment",
           "TranscriptionSegmentEvent", "TranscriptionStreamRequest", "TranscriptionTextDelta", "TranscriptionUsage",
           "form_body", "transcription_limits"]

MAX_CONTEXT_BIAS = 100  # Mistral's documented limit on context_bias items
MAX_BIAS_CHARS = 100  # per item: a word or an underscore-joined phrase
TimestampGranularity = Literal["segment", "word"]
BiasItem = Annotated[str, StringConstraints(pattern=r"^[^,\s]+$", max_length=MAX_BIAS_CHARS)]
FORM_ARRAYS = ("context_bias", "timestamp_granularities")  # repeated multipart fields
_FORM_BOOLS = ("stream", "diarize")
_FORM_NUMBERS = ("temperature",)
_FORM_TEXT = ("model", "file_url", "file_id", "language")


class _TranscriptionFields(RequestModel):
    model: str = Field(min_length=1, max_length=256, description="ID of the model to be used.")
    file_url: str | None = Field(None, min_length=1, max_length=2083, description="Url of a file to be transcribed")
    file_id: str | None = Field(None, min_length=1, max_length=64, description="ID of a file uploaded to /v1/files")
    language: str | None = Field(None, pattern=r"^\w{2}$", description="Language of the audio, e.g. 'en'.")
    temperature: float | None = Field(None, ge=0, le=1)
    diarize: StrictBool = False
    context_bias: list[BiasItem] = Field(default_factory=list, max_length=MAX_CONTEXT_BIAS)
    timestamp_granularities: list[TimestampGranularity] = Field(default_factory=list, max_length=2)
    # SDK 3.7.0 sends it (a JSON part) for diarization only, which this server does not do: refused when present
    speaker_references: dict[str, Any] | None = Field(None, max_length=32)


class TranscriptionRequest(_TranscriptionFields):
    stream: Literal[False] = False


class TranscriptionStreamRequest(_TranscriptionFields):
    stream: Literal[True] = True


class TranscriptionUsage(ResponseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_audio_seconds: int | None = None


class TranscriptionSegment(ResponseModel):
    type: Literal["transcription_segment"] = "transcription_segment"
    text: str
    start: float
    end: float


class TranscriptionResponse(ResponseModel):
    model: str
    text: str
    language: str | None
    segments: list[TranscriptionSegment] = Field(default_factory=list)
    usage: TranscriptionUsage


class TranscriptionEvent(ResponseModel):
    """One stream event (the streaming operation's chunk model): each is sent as an SSE event named by its
    ``type``, which the SDK requires."""

    type: str


class TranscriptionLanguage(TranscriptionEvent):
    type: Literal["transcription.language"] = "transcription.language"
    audio_language: str


class TranscriptionTextDelta(TranscriptionEvent):
    type: Literal["transcription.text.delta"] = "transcription.text.delta"
    text: str


class TranscriptionSegmentEvent(TranscriptionEvent):
    type: Literal["transcription.segment"] = "transcription.segment"
    text: str
    start: float
    end: float
    speaker_id: str | None = None


class TranscriptionDone(TranscriptionResponse, TranscriptionEvent):
    """The whole response, last."""

    type: Literal["transcription.done"] = "transcription.done"


def transcription_limits() -> dict[tuple[str, str, str], dict[str, Any]]:
    """What the transcription service enforces beyond these models, for the OpenAPI documents
    (``registry.constraints.SERVICE_LIMITS``)."""
    notes = {
        "file": "Exactly one of `file`, `file_url`, `file_id` (400 INVALID_AUDIO_SOURCE otherwise). At most "
                "`audio_max_bytes` bytes (413 FILE_TOO_LARGE) and `audio_max_seconds` of audio (413 AUDIO_TOO_LONG); "
                "audio the decoder cannot read: 400 INVALID_AUDIO.",
        "file_id": "A file of the caller's workspace uploaded with purpose `audio` (404 / 400 otherwise).",
        "diarize": "Only `false`: no diarization model is installed (400 UNSUPPORTED_FEATURE).",
    }
    return {(op, "body", name): {"x-description": note} for op in ("audio_api_v1_transcriptions_post",
                                                                    "audio_api_v1_transcriptions_post_stream")
            for name, note in notes.items()}


def form_body(fields: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The form's text fields as the JSON body they stand for: arrays from repeated fields (a JSON array in one
    field is accepted too), ``true``/``false`` booleans, numbers; unknown fields are ignored like unknown JSON keys.
    Values that are not what they claim are left as text, so the model's validation reports them (422)."""
    body: dict[str, Any] = {}
    for name in FORM_ARRAYS:
        values = [v for v in fields.get(name, ()) if v != ""]
        if len(values) == 1 and values[0].startswith("["):
            body[name] = _json_array(values[0], name)
        elif values:
            body[name] = values
    for name in (*_FORM_TEXT, *_FORM_BOOLS, *_FORM_NUMBERS, "speaker_references"):
        values = fields.get(name)
        if not values:
            continue
        if len(values) > 1:
            raise BadRequest(f"form field {name!r} is given {len(values)} times; it takes one value", param=name)
        value = values[0].strip() if name not in _FORM_TEXT else values[0]
        if value in ("", "null") and name not in ("model",):
            continue
        body[name] = _typed(name, value)
    return body


def _typed(name: str, value: str) -> Any:
    if name in _FORM_BOOLS:
        return {"true": True, "false": False}.get(value.lower(), value)
    if name in _FORM_NUMBERS:
        try:
            number = float(value) if len(value) <= 32 else value
        except ValueError:
            return value
        return number
    if name == "speaker_references":
        return _json(value, name)
    return value


def _json_array(value: str, name: str) -> Any:
    parsed = _json(value, name)
    return parsed if isinstance(parsed, list) else value


def _json(value: str, name: str) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        raise BadRequest(f"form field {name!r} is not valid JSON", param=name) from None
