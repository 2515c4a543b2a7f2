"""Transcription (``POST /v1/audio/transcriptions``, whole or streamed) on a speech engine.

The audio comes from exactly one of: the uploaded ``file`` part, ``file_url`` (fetched by the shared safe fetcher),
or ``file_id`` (a file of the caller's workspace uploaded with purpose ``audio``). It is decoded off the event loop
to mono float32 at 16 kHz (its length checked against ``audio_max_seconds``: 413), then the engine decodes
segments one by one: a stream sends each segment's text as soon as the engine yields it, never all at the end.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from anyio.to_thread import run_sync

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.audio import AudioTooLarge, decode_audio
from mistral_gateway.engines.base import (
    EngineError,
    InvalidInput,
    Segment,
    SpeechEngine,
    Transcript,
    TranscriptionOptions,
)
from mistral_gateway.engines.manager import EngineManager, kind_of
from mistral_gateway.errors import BadRequest, Forbidden, PayloadTooLarge, ServiceUnavailable
from mistral_gateway.protocol.audio import (
    TranscriptionDone,
    TranscriptionEvent,
    TranscriptionLanguage,
    TranscriptionRequest,
    TranscriptionResponse,
    TranscriptionSegment,
    TranscriptionSegmentEvent,
    TranscriptionStreamRequest,
    TranscriptionTextDelta,
    TranscriptionUsage,
)
from mistral_gateway.security.fetch import FetchRefused, SafeFetcher
from mistral_gateway.services.completions import engine_errors, resolve_text_model
from mistral_gateway.services.files import Download, FileService
from mistral_gateway.services.models import ModelCatalog

__all__ = ["AudioLimits", "AudioRequest", "Decoder", "TranscriptionService", "Upload"]

Decoder = Callable[[bytes, "AudioLimits"], Any]  # -> mono float32 at 16 kHz (engines.audio); blocking
AnyRequest = TranscriptionRequest | TranscriptionStreamRequest
AUDIO_CONTENT_TYPES = ("audio/", "video/")  # file_url answers taken (plus octet-stream, by the fetcher)


@dataclass(frozen=True, slots=True)
class Upload:
    """The request's ``file`` part, read whole (within ``audio_max_bytes``)."""

    data: bytes
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class AudioRequest:
    """A multipart request: the form's fields as the row's model, and the ``file`` part if one was sent (a batch
    line, JSON, is the model alone)."""

    request: TranscriptionRequest | TranscriptionStreamRequest
    upload: Upload | None = None


@dataclass(frozen=True, slots=True)
class AudioLimits:
    max_bytes: int
    max_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> AudioLimits:
        return cls(settings.audio_max_bytes, settings.audio_max_seconds)


@dataclass(slots=True)
class _Job:
    """A transcription under way: what the response needs besides the segments."""

    model: str
    transcript: Transcript
    words: bool  # segments are words (timestamp_granularities has 'word')
    timestamps: bool  # segments are listed at all

    @property
    def language(self) -> str | None:
        code = self.transcript.language
        return code if len(code) == 2 else None  # Mistral's ^\w{2}$: Whisper's 'haw'/'yue' have no such code

    def usage(self) -> TranscriptionUsage:
        return TranscriptionUsage(prompt_audio_seconds=math.ceil(self.transcript.duration))

    def listed(self, segment: Segment) -> list[TranscriptionSegment]:
        if not self.timestamps:
            return []
        if self.words:
            return [TranscriptionSegment(text=w.text.strip(), start=_t(w.start), end=_t(w.end))
                    for w in segment.words]
        return [TranscriptionSegment(text=segment.text.strip(), start=_t(segment.start), end=_t(segment.end))]


class TranscriptionService:
    def __init__(self, catalog: ModelCatalog, engines: EngineManager, files: FileService, limits: AudioLimits, *,
                 decoder: Decoder | None = None, fetcher: SafeFetcher | None = None) -> None:
        self._catalog = catalog
        self._engines = engines
        self._files = files
        self.limits = limits
        self._decode = decoder or _decode
        self._fetcher = fetcher  # None refuses file_url

    async def transcribe(self, workspace_id: str, request: AnyRequest, upload: Upload | None) -> TranscriptionResponse:
        job = await self._start(workspace_id, request, upload)
        text: list[str] = []
        segments: list[TranscriptionSegment] = []
        async for segment in self._segments(job):
            text.append(segment.text)
            segments += job.listed(segment)
        return TranscriptionResponse(model=job.model, text="".join(text).strip(), language=job.language,
                                     segments=segments, usage=job.usage())

    async def stream(self, workspace_id: str, request: AnyRequest,
                     upload: Upload | None) -> AsyncIterator[TranscriptionEvent]:
        """Returns once the audio is decoded and the engine started (errors until then are raised here); the
        events follow the engine's segments as they come. The first event is pulled here, so the generator has
        started: however the stream ends (closed unread, or dropped), its ``finally`` closes the engine's
        segments."""
        events = self._events(await self._start(workspace_id, request, upload))
        return _Primed(await anext(events), events)

    async def transcribe_bytes(self, model: str, data: bytes, *, param: str = "messages") -> str:
        """The text of ``data`` (any audio the decoder reads) by ``model``: the audio-in-chat cascade's first step
        (``param`` names the request's part in errors)."""
        job = await self._run(model, data, TranscriptionOptions(), words=False, timestamps=False, param=param)
        return "".join([s.text async for s in self._segments(job)]).strip()

    def speech_entry(self, model: str, capability: str = "audio_transcription") -> ModelEntry:
        """The catalog entry serving ``model`` with a speech engine: 404 unknown, 400 naming the capability."""
        entry = resolve_text_model(self._catalog, model, capability)
        if entry.engine == "none":  # routed to upstreams only: audio is not forwarded (multipart, chat cascades)
            raise BadRequest(f"model {model!r} has no local speech engine here and audio is not forwarded to "
                             "upstreams", code="UNSUPPORTED_MODEL_CAPABILITY", param="model")
        if kind_of(entry) != "speech":
            raise BadRequest(f"model {model!r} is not served by a speech engine and cannot do {capability!r}",
                             code="UNSUPPORTED_MODEL_CAPABILITY", param="model")
        return entry

    async def _events(self, job: _Job) -> AsyncIterator[TranscriptionEvent]:
        text: list[str] = []
        segments: list[TranscriptionSegment] = []
        try:
            if job.language is not None:
                yield TranscriptionLanguage(audio_language=job.language)
            async for segment in self._segments(job):
                delta = segment.text if text else segment.text.lstrip()
                text.append(delta)
                if delta:
                    yield TranscriptionTextDelta(text=delta)
                for listed in job.listed(segment):
                    segments.append(listed)
                    yield TranscriptionSegmentEvent(text=listed.text, start=listed.start, end=listed.end)
        finally:
            await _close(job.transcript.segments)  # also when the stream ended before the first segment
        yield TranscriptionDone(model=job.model, text="".join(text).strip(), language=job.language,
                                segments=segments, usage=job.usage())

    async def _segments(self, job: _Job) -> AsyncIterator[Segment]:
        segments = job.transcript.segments
        try:
            async for segment in segments:
                yield segment
        except InvalidInput as exc:
            raise BadRequest(str(exc), code="INVALID_AUDIO", param="file") from exc
        except EngineError as exc:
            raise engine_errors(exc) from exc
        finally:
            await _close(segments)  # a client that went away stops the decoding

    async def _start(self, workspace_id: str, request: AnyRequest, upload: Upload | None) -> _Job:
        if request.diarize or request.speaker_references:
            raise BadRequest("diarization is not available on this server: no diarization model is installed "
                             "(send diarize=false and no speaker_references)", code="UNSUPPORTED_FEATURE",
                             param="diarize")
        self.speech_entry(request.model)  # model errors before any audio is read or fetched
        data = await self._audio(workspace_id, request, upload)
        words = "word" in request.timestamp_granularities
        options = TranscriptionOptions(
            language=request.language, temperature=request.temperature or 0.0, word_timestamps=words,
            prompt=", ".join(b.replace("_", " ") for b in request.context_bias) or None)
        return await self._run(request.model, data, options, words=words,
                               timestamps=bool(request.timestamp_granularities))

    async def _run(self, model: str, data: bytes, options: TranscriptionOptions, *, words: bool,
                   timestamps: bool, param: str = "file") -> _Job:
        engine = await self._engine(self.speech_entry(model), model)
        audio = await self._decoded(data, param)
        try:
            transcript = await engine.transcribe(audio, options)
        except InvalidInput as exc:
            raise BadRequest(str(exc), code="INVALID_AUDIO", param=param) from exc
        except EngineError as exc:
            raise engine_errors(exc) from exc
        return _Job(model, transcript, words, timestamps)

    async def _engine(self, entry: ModelEntry, model: str) -> SpeechEngine:
        try:
            return await self._engines.speech(entry)
        except (EngineError, ValueError) as exc:  # weights missing, or an entry whose engine cannot do speech
            raise ServiceUnavailable(f"model {model!r} could not be loaded: {exc}", retry_after=30.0,
                                     code="MODEL_LOAD_FAILED") from exc

    async def _decoded(self, data: bytes, param: str) -> Any:
        if not data:
            raise BadRequest("the audio is empty", code="INVALID_AUDIO", param=param)
        try:
            return await run_sync(self._decode, data, self.limits)
        except AudioTooLarge as exc:  # the message states the limit
            raise PayloadTooLarge(str(exc), code="AUDIO_TOO_LONG" if exc.unit == "seconds" else "FILE_TOO_LARGE") \
                from exc
        except InvalidInput as exc:
            raise BadRequest(str(exc), code="INVALID_AUDIO", param=param) from exc

    async def _audio(self, workspace_id: str, request: AnyRequest, upload: Upload | None) -> bytes:
        given = [name for name, value in (("file", upload), ("file_url", request.file_url),
                                          ("file_id", request.file_id)) if value is not None]
        if len(given) != 1:
            raise BadRequest("give exactly one of file, file_url and file_id" + (
                f" (got {', '.join(given)})" if given else ""), code="INVALID_AUDIO_SOURCE", param="file")
        if upload is not None:
            return upload.data
        if request.file_id is not None:
            return await self._stored(workspace_id, request.file_id)
        assert request.file_url is not None
        return await self.read_url(request.file_url)

    async def _stored(self, workspace_id: str, file_id: str) -> bytes:
        info = await run_sync(self._files.retrieve, workspace_id, file_id)  # 404 for other workspaces' files too
        if info.purpose != "audio":
            raise BadRequest(f"file {file_id!r} was uploaded with purpose {info.purpose!r}; transcription reads files "
                             "uploaded with purpose 'audio'", code="INVALID_FILE_PURPOSE", param="file_id")
        if info.bytes is not None and info.bytes > self.limits.max_bytes:
            raise self._too_large()
        return await self._read(await run_sync(self._files.download, workspace_id, file_id))

    async def read_url(self, url: str, *, what: str = "file_url", param: str = "file_url") -> bytes:
        """The audio at ``url``: a signed URL of this server's own files (``/v1/files/{id}/url``) is read from
        storage when its signature holds; any other URL through the shared safe fetcher (private addresses refused
        unless ``fetch_allow`` lists them)."""
        own = _signed_parts(url)
        if own is not None:
            try:
                return await self._read(await run_sync(lambda: self._files.download_signed(*own)))
            except Forbidden:
                pass  # not one of ours after all (or expired): fetched like any URL
        if self._fetcher is None:
            raise BadRequest(f"{what} is not available on this server; send the audio itself",
                             code="UNSUPPORTED_FEATURE", param=param)
        try:
            fetched = await self._fetcher.fetch(url, what=what, max_bytes=self.limits.max_bytes,
                                                accept=AUDIO_CONTENT_TYPES)
        except FetchRefused as exc:
            raise BadRequest(str(exc), code="INVALID_FILE_URL", param=param) from exc
        return bytes(fetched.data)

    async def _read(self, download: Download) -> bytes:
        if download.size > self.limits.max_bytes:
            raise self._too_large()
        data = await run_sync(_join, download.chunks, self.limits.max_bytes + 1)
        if len(data) > self.limits.max_bytes:
            raise self._too_large()
        return data

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"the audio exceeds the limit of {self.limits.max_bytes} bytes (audio_max_bytes)",
                               code="FILE_TOO_LARGE")


_SIGNED_PATH = re.compile(r"/files/signed/([0-9a-fA-F-]{36})")


def _signed_parts(url: str) -> tuple[str, str, str, str] | None:
    """(file id, workspace id, expires, signature) of a URL shaped like this server's signed file URLs."""
    parts = urlsplit(url)
    match = _SIGNED_PATH.fullmatch(parts.path)
    query = dict(parse_qsl(parts.query))
    if parts.scheme not in ("http", "https") or match is None or not {"ws", "expires", "signature"} <= set(query):
        return None
    return match.group(1), query["ws"], query["expires"], query["signature"]


class _Primed:
    """``first``, then the rest of ``events``; closing it closes ``events``, even before anything was read."""

    def __init__(self, first: TranscriptionEvent, events: AsyncGenerator[TranscriptionEvent, None]) -> None:
        self._first: TranscriptionEvent | None = first
        self._events = events

    def __aiter__(self) -> _Primed:
        return self

    async def __anext__(self) -> TranscriptionEvent:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return await anext(self._events)

    async def aclose(self) -> None:
        await self._events.aclose()


async def _close(segments: AsyncIterator[Segment]) -> None:
    close = getattr(segments, "aclose", None)
    if close is not None:
        await close()


def _decode(data: bytes, limits: AudioLimits) -> Any:
    return decode_audio(data, max_seconds=limits.max_seconds, max_bytes=limits.max_bytes)


def _join(chunks: Iterator[bytes], limit: int) -> bytes:
    out = bytearray()
    for chunk in chunks:
        out += chunk
        if len(out) >= limit:
            break
    return bytes(out)


def _t(seconds: float) -> float:
    return round(float(seconds), 3)
