"""Audio bytes to what speech engines read: mono float32 PCM in [-1, 1] at ``SAMPLE_RATE`` (16 kHz), with PyAV.

``decode_audio`` takes an encoded file (wav, mp3, flac, ogg/opus/vorbis, m4a/mp4/aac, webm/mkv, aiff) and is bounded:
at most ``max_bytes`` in, at most ``max_seconds`` out (refused from the container's header when it states a longer
duration, else while decoding, so a file lying in its header or stating nothing is stopped all the same). Bytes
that are not audio in one of those formats, or that are corrupt, raise ``InvalidInput``: never anything else.

Only the demuxers of those formats may open the bytes (``format_whitelist``): FFmpeg's playlist and concat demuxers
would otherwise read local files or fetch URLs named inside an uploaded file.

``pcm16_to_float`` and ``Pcm16Resampler`` convert raw signed 16-bit little-endian PCM at any rate (the realtime
session's audio), the latter chunk by chunk with the resampler's state kept between chunks.
"""

from __future__ import annotations

import io
from typing import Any, Literal

import numpy as np

from mistral_gateway.engines.base import SAMPLE_RATE, InvalidInput

__all__ = ["DEMUXERS", "AudioTooLarge", "Pcm16Resampler", "decode_audio", "pcm16_to_float"]

# FFmpeg demuxer names (a container whose demuxer is "mov,mp4,m4a,3gp,3g2,mj2" matches "mov")
DEMUXERS = ("wav", "w64", "aiff", "mp3", "flac", "ogg", "mov", "matroska", "webm", "aac")
FORMATS = "wav, mp3, flac, ogg/opus, m4a/mp4/aac, webm/mkv or aiff"
HEADER_SLACK = 1.0  # seconds a header's duration may exceed the limit by (rounding, priming samples) before refusal
MIN_RATE, MAX_RATE = 1000, 384_000  # raw PCM sample rates accepted


class AudioTooLarge(InvalidInput):
    """The audio is longer (``unit`` "seconds") or bigger ("bytes") than the configured ``limit``: a 413 naming it.
    A subclass of InvalidInput so that a caller which does not tell it apart still answers 400, not 500."""

    def __init__(self, message: str, *, limit: float, unit: Literal["seconds", "bytes"]) -> None:
        super().__init__(message)
        self.limit = limit
        self.unit = unit


def decode_audio(data: bytes, *, max_seconds: float, max_bytes: int) -> np.ndarray:
    """``data`` (an encoded audio file) as mono float32 at 16 kHz. Blocking and CPU-bound: run it off the event loop."""
    if len(data) > max_bytes:
        raise AudioTooLarge(f"the audio file is {len(data)} bytes; the limit is {max_bytes} bytes",
                            limit=max_bytes, unit="bytes")
    if not data:
        raise InvalidInput("the audio file is empty")
    import av  # PyAV: the `local` extra; imported here, not at module import

    try:
        container = av.open(io.BytesIO(data), mode="r", options={"format_whitelist": ",".join(DEMUXERS)},
                            metadata_errors="ignore")
    except Exception as exc:  # FFmpeg's errors on unknown or corrupt input: the caller's bytes, never a 500
        raise InvalidInput(f"the file is not audio this server can decode ({FORMATS})") from exc
    try:
        return _decode(container, max_seconds)
    except InvalidInput:
        raise
    except Exception as exc:  # corrupt data found while decoding
        raise InvalidInput(f"the audio file is corrupt or truncated and cannot be decoded ({_reason(exc)})") from exc
    finally:
        container.close()


def _decode(container: Any, max_seconds: float) -> np.ndarray:
    import av

    if not container.streams.audio:
        raise InvalidInput(f"the file has no audio stream (expected {FORMATS})")
    stream = container.streams.audio[0]
    stated = _stated_seconds(container, stream)
    if stated is not None and stated > max_seconds + HEADER_SLACK:
        raise _too_long(max_seconds, stated)
    limit = int(max_seconds * SAMPLE_RATE)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    total = 0
    for frame in _frames(container, stream):
        for out in resampler.resample(frame):
            chunk = out.to_ndarray().reshape(-1)
            total += chunk.size
            if total > limit:
                raise _too_long(max_seconds)
            chunks.append(chunk)
    chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if audio.size > limit:
        raise _too_long(max_seconds)
    if audio.size == 0:
        raise InvalidInput("the audio stream contains no samples")
    return np.clip(audio, -1.0, 1.0, out=audio)  # float decoders may overshoot slightly


def _frames(container: Any, stream: Any) -> Any:
    """The stream's decoded frames; a damaged packet in the middle is skipped (as players do) rather than failing
    the whole file, but a file whose every packet is damaged decodes to nothing and is refused."""
    import av

    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            continue


def _stated_seconds(container: Any, stream: Any) -> float | None:
    """The duration the container's header states, if any (None when it says nothing)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _too_long(max_seconds: float, stated: float | None = None) -> AudioTooLarge:
    message = (f"the audio lasts {stated:.1f} seconds; the limit is {max_seconds:g} seconds" if stated is not None
               else f"the audio lasts longer than the limit of {max_seconds:g} seconds")
    return AudioTooLarge(message, limit=max_seconds, unit="seconds")


def _reason(exc: Exception) -> str:
    return type(exc).__name__ if not str(exc) else str(exc)[:200]


def _check_pcm(data: bytes, rate: int) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InvalidInput(f"sample rate {rate} Hz is out of range ({MIN_RATE}-{MAX_RATE} Hz)")
    if len(data) % 2:
        raise InvalidInput(f"16-bit PCM audio has an even number of bytes; got {len(data)}")


def _as_float(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def pcm16_to_float(data: bytes, rate: int) -> np.ndarray:
    """Raw mono s16le PCM at ``rate`` Hz (one whole buffer) as float32 at 16 kHz."""
    _check_pcm(data, rate)
    resampler = Pcm16Resampler(rate)
    return np.concatenate([resampler.feed(data), resampler.flush()])


class Pcm16Resampler:
    """Raw mono s16le PCM at ``rate`` Hz, fed in chunks of any size (an odd trailing byte waits for the next chunk),
    out as float32 at 16 kHz. One resampler per audio stream: it keeps the filter state across chunks."""

    def __init__(self, rate: int) -> None:
        _check_pcm(b"", rate)
        self.rate = rate
        self._carry = b""
        self._resampler: Any = None
        if rate != SAMPLE_RATE:
            import av

            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        self._pts = 0

    def feed(self, data: bytes) -> np.ndarray:
        data = self._carry + data
        cut = len(data) - len(data) % 2
        self._carry, data = data[cut:], data[:cut]
        samples = _as_float(data)
        if self._resampler is None or not samples.size:
            return samples
        import av

        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += samples.size
        return self._out(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        """What the resampler still holds; call once, at the end of the stream (a dangling odd byte is dropped)."""
        self._carry = b""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        return self._out(self._resampler.resample(None))

    @staticmethod
    def _out(frames: list[Any]) -> np.ndarray:
        parts = [f.to_ndarray().reshape(-1) for f in frames]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)
