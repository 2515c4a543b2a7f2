"""A minimal audio decoder (PCM WAV via the standard library's ``wave``) behind the transcription service's decoder
seam: bytes -> mono float32 samples at ``SAMPLE_RATE``. The PyAV decoder in ``engines/audio.py`` replaces it as the
service's default (every container format); this one stays for tests and as the fallback without PyAV.
"""

from __future__ import annotations

import io
import wave

import numpy as np

from mistral_gateway.engines.base import SAMPLE_RATE, InvalidInput

__all__ = ["AudioTooLong", "decode_wav"]


class AudioTooLong(InvalidInput):
    """The audio lasts longer than the configured limit (the service answers 413 stating it)."""

    def __init__(self, seconds: float | None, limit: float) -> None:
        told = f" ({seconds:.1f} s)" if seconds is not None else ""
        super().__init__(f"the audio is longer{told} than the limit of {limit:g} seconds")
        self.seconds = seconds
        self.limit = limit


_DTYPES = {1: np.uint8, 2: np.int16, 4: np.int32}


def decode_wav(data: bytes, max_seconds: float) -> np.ndarray:
    """Mono float32 in [-1, 1] at 16 kHz; the duration is checked from the header before any sample is read."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            channels, width, rate, frames = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate(),
                                             wav.getnframes())
            if width not in _DTYPES or not 0 < rate <= 384_000 or channels < 1:
                raise InvalidInput(f"unsupported WAV audio ({width * 8}-bit, {rate} Hz, {channels} channels)")
            if frames / rate > max_seconds:
                raise AudioTooLong(frames / rate, max_seconds)
            raw = wav.readframes(frames)
    except (wave.Error, EOFError) as exc:
        raise InvalidInput(f"the audio could not be decoded: {exc}") from None
    samples = np.frombuffer(raw[: len(raw) // (width * channels) * width * channels], dtype=_DTYPES[width])
    audio = samples.astype(np.float32)
    audio = (audio - 128.0) / 128.0 if width == 1 else audio / float(2 ** (8 * width - 1))
    audio = audio.reshape(-1, channels).mean(axis=1)
    if rate != SAMPLE_RATE and len(audio):
        positions = np.arange(0, len(audio), rate / SAMPLE_RATE)
        audio = np.interp(positions, np.arange(len(audio)), audio).astype(np.float32)
    return audio.astype(np.float32)
