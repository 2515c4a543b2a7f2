"""Raw PCM as the realtime protocol sends it (``audio_format``: six encodings, 8-96 kHz) to what speech engines read:
mono float32 in [-1, 1] at ``SAMPLE_RATE``. Streamed: bytes of a sample split across two messages wait for the next
one, and the resampler (``engines.audio.Pcm16Resampler``, PyAV's: filtered, not aliased) keeps its state between
chunks. Other encodings are read here and handed to it as 16-bit samples (ample for speech).

numpy and PyAV are imported lazily: a server without the local runtimes still starts (and refuses realtime
sessions, having no speech model).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from mistral_gateway.engines.base import SAMPLE_RATE

if TYPE_CHECKING:
    import numpy as np

__all__ = ["SAMPLE_BYTES", "PcmStream"]

SAMPLE_BYTES = {"pcm_s16le": 2, "pcm_s32le": 4, "pcm_f16le": 2, "pcm_f32le": 4, "pcm_mulaw": 1, "pcm_alaw": 1}


class PcmStream:
    """Decodes successive chunks of one stream of ``encoding`` at ``rate`` Hz; ``end`` gives what the resampler
    still holds (once, at the end of the stream)."""

    def __init__(self, encoding: str, rate: int) -> None:
        from mistral_gateway.engines.audio import Pcm16Resampler

        self.encoding = encoding
        self.rate = rate
        self._width = SAMPLE_BYTES[encoding]
        self._rest = b""  # the bytes of an incomplete sample at the end of the last chunk
        self._resampler: Any = Pcm16Resampler(rate) if rate != SAMPLE_RATE else None

    def decode(self, data: bytes) -> np.ndarray:
        data = self._rest + data
        whole = len(data) - len(data) % self._width
        self._rest, data = data[whole:], data[:whole]
        if self._resampler is None:
            return _samples(data, self.encoding)
        return self._resampler.feed(data if self.encoding == "pcm_s16le" else _s16(_samples(data, self.encoding)))

    def end(self) -> np.ndarray:
        import numpy as np

        return self._resampler.flush() if self._resampler is not None else np.zeros(0, np.float32)


def _s16(samples: np.ndarray) -> bytes:
    import numpy as np

    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _samples(data: bytes, encoding: str) -> np.ndarray:
    import numpy as np

    if encoding == "pcm_s16le":
        return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
    if encoding == "pcm_s32le":
        return (np.frombuffer(data, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    if encoding in ("pcm_f16le", "pcm_f32le"):
        raw = np.frombuffer(data, "<f2" if encoding == "pcm_f16le" else "<f4").astype(np.float32)
        return np.clip(np.nan_to_num(raw, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)  # caller-controlled floats
    table = _mulaw_table() if encoding == "pcm_mulaw" else _alaw_table()
    return table[np.frombuffer(data, np.uint8)]


@cache
def _mulaw_table() -> np.ndarray:
    """G.711 mu-law byte -> sample."""
    import numpy as np

    u = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = (((u & 0x0F) << 3) + 0x84 << ((u >> 4) & 0x07)) - 0x84
    return (np.where(u & 0x80, -magnitude, magnitude) / 32768.0).astype(np.float32)


@cache
def _alaw_table() -> np.ndarray:
    """G.711 A-law byte -> sample."""
    import numpy as np

    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent, mantissa = (a >> 4) & 0x07, a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return (np.where(a & 0x80, magnitude, -magnitude) / 32768.0).astype(np.float32)
