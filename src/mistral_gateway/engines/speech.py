"""Speech to text with faster-whisper (CTranslate2, int8 on the CPU): the ``SpeechEngine`` of the catalog's
``faster-whisper`` entries (Whisper base, bundled as the ``whisper-base`` asset).

Transcriptions run on the engine's ``parallel`` decoding threads, never on the event loop; up to ``queue_limit`` more
wait for one (admission beyond that is refused at once with ``EngineBusy``). On its thread faster-whisper computes
the features and detects the language (``transcribe`` returns once that is known), then its lazy segment generator
is pulled there and each segment is handed to the caller's loop as soon as it is decoded. At most ``lookahead``
segments wait for a consumer: a slow reader slows the decoding rather than piling up text, and closing the segment
iterator (or dropping it) stops the decoding before the next segment and frees the thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import (
    SAMPLE_RATE,
    EngineBusy,
    EngineError,
    EngineUnavailable,
    InvalidInput,
    Segment,
    Transcript,
    TranscriptionOptions,
    Word,
)

__all__ = ["MODEL_FILES", "SpeechStats", "WhisperSpeechEngine", "load", "whisper_model"]

log = logging.getLogger("mistral_gateway.engines")

MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")  # a CTranslate2 Whisper directory
LOOKAHEAD = 16  # decoded segments waiting for their reader (about 16 x 30 s of audio)
TEMPERATURE_STEP = 0.2  # Whisper's fallback: a window whose output looks degenerate is decoded again this much hotter
_END = object()


@dataclass
class SpeechStats:
    transcriptions: int = 0  # started decoding
    segments: int = 0  # decoded
    stopped: int = 0  # closed by their reader before the end


class WhisperSpeechEngine:
    """``model`` is a faster-whisper ``WhisperModel`` (or anything with its ``transcribe`` and
    ``supported_languages``)."""

    def __init__(self, model: Any, *, model_id: str = "whisper", parallel: int = 1, queue_limit: int = 32,
                 lookahead: int = LOOKAHEAD, vad: bool = False) -> None:
        if parallel < 1 or queue_limit < 0 or lookahead < 1:
            raise ValueError("need parallel >= 1, queue_limit >= 0 and lookahead >= 1")
        self.model_id = model_id
        self.parallel = parallel
        self._model = model
        # faster-whisper's bundled Silero VAD: stretches without speech are skipped before Whisper sees them (noise
        # or a tone otherwise sends it through every fallback temperature; timestamps stay the audio's own)
        self._vad = vad
        self._languages = frozenset(model.supported_languages)
        self._capacity = parallel + queue_limit
        self._lookahead = lookahead
        # ``parallel`` long-lived decoding threads; admitted transcriptions beyond them wait in the pool's queue. Not
        # a thread per transcription: CTranslate2 keeps per-thread state, and after a few short-lived calling
        # threads the process aborted at exit ("terminate called without an active exception").
        self._pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix=f"speech-{model_id}")
        self._lock = threading.Lock()
        self._active: set[_Decoding] = set()  # admitted: queued for a slot or decoding
        self._closed = False
        self.stats = SpeechStats()

    @property
    def model(self) -> Any:
        """The loaded faster-whisper model (another engine may share it, e.g. with other limits)."""
        return self._model

    @property
    def active(self) -> int:
        """Transcriptions admitted and not finished (queued or decoding)."""
        with self._lock:
            return len(self._active)

    async def transcribe(self, audio: Any, options: TranscriptionOptions) -> Transcript:
        samples = _samples(audio)
        if options.language is not None and options.language not in self._languages:
            raise InvalidInput(f"language {options.language!r} is not one this model transcribes; omit it to have "
                               f"the language detected")
        decoding = _Decoding(asyncio.get_running_loop(), self._lookahead)
        self._admit(decoding)
        try:
            self._pool.submit(self._run, decoding, samples, options)
        except RuntimeError as exc:  # closed since admission
            self._discard(decoding)
            raise EngineUnavailable(f"{self.model_id} is shutting down") from exc
        try:
            first = await decoding.items.get()
        except BaseException:  # cancelled while queued or detecting: nobody will read the segments
            decoding.cancel()
            raise
        if isinstance(first, BaseException):
            raise first
        language, duration = first
        return Transcript(language, duration, _SegmentStream(decoding))

    def close(self) -> None:
        """Stop every transcription in flight after its current segment; later calls are refused."""
        with self._lock:
            self._closed = True
            active = list(self._active)
        for decoding in active:
            decoding.cancel()
        self._pool.shutdown(wait=False)  # queued ones still run, see they are stopped and tell their reader

    def _admit(self, decoding: _Decoding) -> None:
        with self._lock:
            if self._closed:
                raise EngineUnavailable(f"{self.model_id} is shutting down")
            if len(self._active) >= self._capacity:
                raise EngineBusy(f"{self.model_id} is transcribing or queueing {len(self._active)} audio files (its "
                                 f"limit); retry shortly", retry_after=5.0)
            self._active.add(decoding)

    def _run(self, decoding: _Decoding, samples: np.ndarray, options: TranscriptionOptions) -> None:
        """On a decoding thread: the features and language, then the segments one by one. The admission is given
        back before the reader hears of the end, so a reader that saw it may start another at once."""
        last: Any = EngineUnavailable(f"{self.model_id} stopped before this transcription started", retry_after=5.0)
        try:
            if not decoding.stopped:  # else cancelled, or the engine closed, while it waited in the queue
                last = self._decode(decoding, samples, options)
        finally:
            self._discard(decoding)
            decoding.put(last)

    def _discard(self, decoding: _Decoding) -> None:
        with self._lock:
            self._active.discard(decoding)

    def _decode(self, decoding: _Decoding, samples: np.ndarray, options: TranscriptionOptions) -> Any:
        """Hands over the language and each segment; returns what ends the stream: the end, or the failure."""
        segments: Iterator[Any] | None = None
        try:
            self._count("transcriptions")
            segments, info = self._model.transcribe(
                samples, language=options.language, temperature=_temperatures(options.temperature),
                word_timestamps=options.word_timestamps, initial_prompt=options.prompt or None,
                **({"vad_filter": True} if self._vad else {}))
            decoding.put((str(info.language), round(float(info.duration), 3)))
            for segment in _until(decoding, segments):
                self._count("segments")
                decoding.put(_segment(segment))
            if decoding.stopped:
                self._count("stopped")
            return _END
        except Exception as exc:  # CTranslate2 or the tokenizer failed: the model's fault, not the caller's
            log.exception("%s: transcription failed", self.model_id)
            return EngineUnavailable(f"{self.model_id} failed to transcribe ({type(exc).__name__}); retry shortly",
                                     retry_after=5.0)
        finally:
            close = getattr(segments, "close", None)
            if close is not None:
                close()

    def _count(self, what: str) -> None:
        with self._lock:
            setattr(self.stats, what, getattr(self.stats, what) + 1)


def _until(decoding: _Decoding, segments: Iterator[Any]) -> Iterator[Any]:
    """The generator's segments while the reader wants them and has room for them (each ``next`` decodes one)."""
    iterator = iter(segments)
    while decoding.wait_room():
        segment = next(iterator, None)
        if segment is None:
            return
        yield segment


class _Decoding:
    """One transcription's hand-off from its decoding thread to the reader's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, lookahead: int) -> None:
        self.loop = loop
        self.items: asyncio.Queue[Any] = asyncio.Queue()
        self._stop = threading.Event()
        self._room = threading.Semaphore(lookahead)  # segments the reader has room for

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def put(self, item: Any) -> None:
        """From the decoding thread."""
        try:
            self.loop.call_soon_threadsafe(self.items.put_nowait, item)
        except RuntimeError:  # the reader's loop is closed: nobody will read
            self.cancel()

    def wait_room(self) -> bool:
        """From the decoding thread: block until the reader took a segment (or stopped); False once stopped."""
        if not self.stopped:
            self._room.acquire()
        return not self.stopped

    def taken(self) -> None:
        self._room.release()

    def cancel(self) -> None:
        """From anywhere: the decoding stops before its next segment."""
        self._stop.set()
        self._room.release()  # wakes a decoding thread waiting for room


class _SegmentStream:
    """``Transcript.segments``: segments as the decoding thread hands them over. ``aclose`` (or garbage collection)
    stops the decoding."""

    def __init__(self, decoding: _Decoding) -> None:
        self._decoding = decoding
        self._done = False

    def __aiter__(self) -> AsyncIterator[Segment]:
        return self

    async def __anext__(self) -> Segment:
        if self._done:
            raise StopAsyncIteration
        try:
            item = await self._decoding.items.get()
        except BaseException:  # the reader was cancelled: it will not come back for the rest
            await self.aclose()
            raise
        if item is _END or isinstance(item, BaseException):
            self._done = True
            if item is _END:
                raise StopAsyncIteration
            raise item
        self._decoding.taken()
        return item  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            self._decoding.cancel()

    def __del__(self) -> None:
        if not self._done:
            self._decoding.cancel()


def _samples(audio: Any) -> np.ndarray:
    try:
        samples = np.asarray(audio, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("audio must be a sequence of float samples") from exc
    if samples.ndim != 1 or samples.size == 0:
        raise InvalidInput(f"audio must be mono samples at {SAMPLE_RATE} Hz, at least one")
    if not np.isfinite(samples).all():
        raise InvalidInput("audio samples must be finite numbers")
    return samples


def _temperatures(first: float) -> tuple[float, ...]:
    """The caller's temperature, then Whisper's fallbacks above it up to 1.0 (a window decoded into repetitions or
    low-probability text is decoded again, hotter), as faster-whisper does from 0 by default."""
    steps = int(max(0.0, 1.0 - first) / TEMPERATURE_STEP + 1e-9)
    return tuple(round(first + TEMPERATURE_STEP * i, 3) for i in range(steps + 1))


def _segment(segment: Any) -> Segment:
    words = tuple(Word(_seconds(w.start), _seconds(w.end), str(w.word)) for w in segment.words or ())
    return Segment(_seconds(segment.start), _seconds(segment.end), str(segment.text), words)


def _seconds(value: Any) -> float:
    return round(float(value), 3)


def whisper_model(path: Path, *, threads: int, workers: int) -> Any:
    """faster-whisper's model from a local CTranslate2 directory, int8 on the CPU; nothing is fetched from a hub."""
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise EngineError(f"{path} is not a Whisper model directory: it lacks {', '.join(missing)}; run "
                          f"`mistral-gateway models install`")
    # A directory path is never looked up on a hub, and with tokenizer.json present faster-whisper does not fetch
    # a tokenizer either; local_files_only makes any other lookup fail instead of downloading.
    from faster_whisper import WhisperModel

    return WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=threads, num_workers=workers,
                        local_files_only=True)


def load(entry: ModelEntry, path: Path | None, settings: Settings) -> WhisperSpeechEngine:
    if path is None:
        raise EngineError(f"model {entry.id!r} has neither 'path' nor 'asset' configured")
    threads = entry.threads or len(os.sched_getaffinity(0))
    model = whisper_model(path, threads=threads, workers=entry.parallel)
    return WhisperSpeechEngine(model, model_id=entry.id, parallel=entry.parallel,
                               queue_limit=settings.inference_queue_limit, vad=settings.speech_vad)
