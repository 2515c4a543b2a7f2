"""One realtime transcription session: its settings, its audio window, and the events its decodings produce.

Audio arrives as PCM chunks (``append``) into a window of undecided audio at ``SAMPLE_RATE``. The decoder
(``decode_loop``) decodes the whole window again after every ``step`` of new audio and sends the words that two
consecutive decodings agree on as ``transcription.text.delta`` events; segments that are over (every word said, ended
a second before the window does) become ``transcription.segment`` events and leave the window. ``flush`` and ``end``
decode the window a last time and say all of it; ``end`` then sends ``transcription.done``. A window reaching
``window_seconds`` gives up its finished segments (or all of itself) whatever the agreement, which bounds decoding
cost and memory.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mistral_gateway.engines.base import SAMPLE_RATE, EngineBusy, SpeechEngine, TranscriptionOptions
from mistral_gateway.errors import BadRequest, PayloadTooLarge
from mistral_gateway.protocol.realtime import AudioFormat, SessionUpdatePayload
from mistral_gateway.services.realtime_pcm import PcmStream
from mistral_gateway.services.realtime_text import Piece, Released, WindowText

if TYPE_CHECKING:
    import numpy as np

    from mistral_gateway.services.realtime import RealtimeLimits

__all__ = ["GUARD_SECONDS", "Session"]

GUARD_SECONDS = 1.0  # a segment ending this close to the window's end may still grow: it stays
# Below this RMS (about -50 dBFS) audio is silence: a window of it is not decoded, and a segment over it is dropped
# (Whisper "hears" words such as "you" in silence, and a microphone sends plenty of it).
SILENCE_RMS = 0.003
PROMPT_CHARS = 200  # of the text already said, given to the decoder as context
CATCH_UP_SECONDS = 10.0  # audio beyond the window the reader may buffer while a decoding runs


class Session:
    def __init__(self, model: str, engine: SpeechEngine, limits: RealtimeLimits,
                 send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self.model, self.engine, self.limits = model, engine, limits
        self.request_id = uuid.uuid4().hex
        self.audio_format = AudioFormat(encoding="pcm_s16le", sample_rate=SAMPLE_RATE)
        self.step_ms = max(limits.step_ms, limits.min_step_ms)
        self.language: str | None = None
        self.context_bias: list[str] | None = None
        self._send, self._send_lock = send, asyncio.Lock()
        self._pcm: PcmStream | None = None  # set by the first audio: the format is fixed from then on
        self._chunks: list[np.ndarray] = []  # the window: undecided audio, in arrival order
        self._window = 0  # samples in the window
        self._offset = 0  # samples before the window (already transcribed and released)
        self._received = 0  # samples in the whole session
        self._since = 0  # samples since the last decoding began
        self._flushes, self._ending = 0, False
        self._wake, self._room = asyncio.Event(), asyncio.Event()
        self._room.set()
        self._text = WindowText()
        self._words: list[str] = []  # every word said in the session
        self._segments: list[dict[str, Any]] = []
        self._heard: str | None = None  # the language of the first decoding that heard words (kept from then on)

    # -- the reader's side -------------------------------------------------------------------------------------

    async def send(self, event: dict[str, Any]) -> None:
        async with self._send_lock:  # reader and decoder both send: one event at a time
            await self._send(event)

    @property
    def audio_seconds(self) -> float:
        return self._received / SAMPLE_RATE

    def created(self) -> dict[str, Any]:
        return {"type": "session.created", "session": self._described()}

    def updated(self) -> dict[str, Any]:
        return {"type": "session.updated", "session": self._described()}

    def update(self, payload: SessionUpdatePayload) -> None:
        """Apply a ``session.update`` whole, or raise (and change nothing)."""
        if self._pcm is not None:
            raise BadRequest("session fields are set before audio starts; this session already has audio",
                             code="SESSION_LOCKED")
        if payload.diarize:
            raise BadRequest("diarize is not supported: this server has no diarization model", code="UNSUPPORTED")
        if payload.speaker_references:
            raise BadRequest("speaker_references needs diarize, which this server does not support",
                             code="UNSUPPORTED")
        if payload.turn_detection is not None:
            raise BadRequest("turn_detection is not supported by this server (no turn.* events)", code="UNSUPPORTED")
        if payload.audio_format is not None:
            self.audio_format = payload.audio_format
        if payload.target_streaming_delay_ms is not None:
            self.step_ms = max(payload.target_streaming_delay_ms, self.limits.min_step_ms)
        if payload.language is not None:
            self.language = payload.language
        if payload.context_bias is not None:
            self.context_bias = payload.context_bias or None

    def append(self, data: bytes) -> None:
        if self._ending:
            raise BadRequest("input_audio.end was sent: this session takes no more audio", code="SESSION_ENDING")
        if self._pcm is None:
            self._pcm = PcmStream(self.audio_format.encoding, self.audio_format.sample_rate)
        samples = self._pcm.decode(data)
        if self._received + len(samples) > self.limits.max_audio_seconds * SAMPLE_RATE:
            raise PayloadTooLarge(f"the session reached {self.limits.max_audio_seconds:g} s of audio, the limit per "
                                  "session", code="AUDIO_TOO_LONG")
        self._take(samples)

    def _take(self, samples: np.ndarray) -> None:
        if not len(samples):
            return
        self._chunks.append(samples)
        self._window += len(samples)
        self._received += len(samples)
        self._since += len(samples)
        if self._window > (self.limits.window_seconds + CATCH_UP_SECONDS) * SAMPLE_RATE:
            self._room.clear()
        self._wake.set()

    def flush(self) -> None:
        self._flushes += 1
        self._wake.set()

    def end(self) -> None:
        if self._pcm is not None:
            self._take(self._pcm.end())  # the resampler's last samples
        self._ending = True
        self._wake.set()

    async def room(self) -> None:
        await self._room.wait()

    # -- the decoder's side ------------------------------------------------------------------------------------

    async def decode_loop(self) -> None:
        """Decode as audio, flushes and the end arrive; returns after ``transcription.done``."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                if self._flushes or self._ending:
                    self._flushes, ending = 0, self._ending
                    await self._final()
                    if ending:
                        await self.send(self._done())
                        return
                elif self._since * 1000 >= self.step_ms * SAMPLE_RATE:
                    await self._partial()
                else:
                    break

    async def _partial(self) -> None:
        audio = self._snapshot()
        window = len(audio) / SAMPLE_RATE
        try:
            pieces = await self._hear(audio)
        except EngineBusy:  # the engine's queue is full (other sessions, transcriptions): try at the next step
            return
        words = self._text.agreed(pieces)
        until = window - GUARD_SECONDS
        if window >= self.limits.window_seconds:  # full: finished segments leave now, agreed or not
            finished = [p for p in pieces if p.end <= until]
            words += self._text.rest(finished or pieces)
            released = self._text.release(finished, until=until, window=window) if finished \
                else self._text.release(pieces, until=None, window=window)
        else:
            released = self._text.release(pieces, until=until, window=window)
        await self._say(words, released, len(audio))

    async def _final(self) -> None:
        audio = self._snapshot()
        if not len(audio):
            return
        window = len(audio) / SAMPLE_RATE
        pieces = await self._hear(audio)
        words = self._text.rest(pieces)
        await self._say(words, self._text.release(pieces, until=None, window=window), len(audio))

    async def _hear(self, audio: np.ndarray) -> list[Piece]:
        self._since = 0
        if _rms(audio) < SILENCE_RMS:
            return []
        options = TranscriptionOptions(language=self.language or self._heard, prompt=self._prompt())
        transcript = await self.engine.transcribe(audio, options)
        try:
            pieces = [Piece(s.start, s.end, tuple(s.text.split())) async for s in transcript.segments]
        finally:
            close = getattr(transcript.segments, "aclose", None)
            if close is not None:
                await close()
        pieces = [p for p in pieces if _rms(audio[round(p.start * SAMPLE_RATE):round(p.end * SAMPLE_RATE)])
                  >= SILENCE_RMS]
        if self._heard is None and any(p.words for p in pieces):
            self._heard = self.language or transcript.language
            await self.send({"type": "transcription.language", "audio_language": self._heard})
        return pieces

    def _prompt(self) -> str | None:
        """The decoder's prompt: the context_bias phrases, then the end of the text said before this window (what
        Whisper's own decoding carries from one 30 s window to the next: spelling, casing, punctuation)."""
        said = " ".join(self._words[:len(self._words) - len(self._text.said)])
        tail = said if len(said) <= PROMPT_CHARS else said[-PROMPT_CHARS:].partition(" ")[2]  # whole words only
        parts = [", ".join(self.context_bias) if self.context_bias else "", tail]
        return " ".join(p for p in parts if p) or None

    async def _say(self, words: list[str], released: Released, decoded: int) -> None:
        if words:
            text = " ".join(words)
            await self.send({"type": "transcription.text.delta", "text": f" {text}" if self._words else text})
            self._words.extend(words)
        start = self._offset / SAMPLE_RATE
        for a, b, text in released.segments:
            segment = {"text": text, "start": round(start + a, 3), "end": round(start + b, 3)}
            self._segments.append({"type": "transcription_segment", **segment})
            await self.send({"type": "transcription.segment", **segment})
        self._drop(min(decoded, round(released.cut * SAMPLE_RATE)))

    def _done(self) -> dict[str, Any]:
        seconds = math.ceil(self.audio_seconds) if self._received else 0
        return {"type": "transcription.done", "model": self.model, "text": " ".join(self._words),
                "language": self._heard or self.language, "segments": self._segments,
                # audio is what this session is measured in; the engine reports no token counts
                "usage": {"prompt_audio_seconds": seconds, "prompt_tokens": 0, "completion_tokens": 0,
                          "total_tokens": 0}}

    # -- the window --------------------------------------------------------------------------------------------

    def _snapshot(self) -> np.ndarray:
        import numpy as np

        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        self._chunks = [audio] if len(audio) else []
        return audio

    def _drop(self, samples: int) -> None:
        if samples <= 0:
            return
        rest = self._snapshot()[samples:]
        self._chunks = [rest] if len(rest) else []
        self._window, self._offset = len(rest), self._offset + samples
        if self._window <= (self.limits.window_seconds + CATCH_UP_SECONDS) * SAMPLE_RATE:
            self._room.set()

    def _described(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "model": self.model,
                "audio_format": self.audio_format.model_dump(), "target_streaming_delay_ms": self.step_ms,
                "diarize": False, "context_bias": self.context_bias, "language": self.language}


def _rms(audio: np.ndarray) -> float:
    """Root mean square; an empty span counts as audible (a segment without a usable time span is kept)."""
    import numpy as np

    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 1.0
