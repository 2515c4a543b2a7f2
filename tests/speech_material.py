"""Speech test material, made on the spot: synthetic speech from espeak-ng (a Debian package: ``apt-get install -y
espeak-ng``; `.ci/run` and `make bench` install it), tones, re-encoding with PyAV into the formats clients upload, and
the word error rate. Shared by the speech tests and the benchmark's speech suite (``bench/suites/speech.py``).
"""

from __future__ import annotations

import io
import math
import re
import shutil
import struct
import subprocess
import wave
from pathlib import Path

__all__ = ["ENCODINGS", "ESPEAK_MISSING", "encode", "espeak", "espeak_available", "tone_wav", "wer", "words"]

ESPEAK_MISSING = "espeak-ng is not installed (apt-get install -y espeak-ng): no synthetic speech to transcribe"
# format name for PyAV -> (container format, codec, sample rate or None to keep the source's)
ENCODINGS: dict[str, tuple[str, str, int | None]] = {
    "wav": ("wav", "pcm_s16le", None),
    "mp3": ("mp3", "libmp3lame", None),
    "flac": ("flac", "flac", None),
    "ogg": ("ogg", "libopus", 48_000),
    "m4a": ("ipod", "aac", None),
    "webm": ("webm", "libopus", 48_000),
}


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def espeak(text: str, path: Path, *, words_per_minute: int = 160) -> bytes:
    """``text`` spoken by espeak-ng (English voice, 22.05 kHz mono WAV) into ``path``; returns the file's bytes."""
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(words_per_minute), "-w", str(path), text], check=True,
                   capture_output=True, timeout=120)
    return path.read_bytes()


def tone_wav(seconds: float, *, rate: int = 16_000, channels: int = 1, frequency: float = 440.0) -> bytes:
    """A sine tone as 16-bit PCM WAV (the same signal on every channel)."""
    count = int(seconds * rate)
    frames = b"".join(struct.pack("<h", int(12_000 * math.sin(2 * math.pi * frequency * i / rate))) * channels
                      for i in range(count))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return buf.getvalue()


def encode(wav: bytes, name: str) -> bytes:
    """``wav`` re-encoded as ``name`` (a key of ``ENCODINGS``), mono, with PyAV."""
    import av

    container, codec, rate = ENCODINGS[name]
    buf = io.BytesIO()
    with av.open(io.BytesIO(wav)) as src, av.open(buf, mode="w", format=container) as dst:
        source = src.streams.audio[0]
        stream = dst.add_stream(codec, rate=rate or source.rate, layout="mono")
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono",
                                      rate=rate or source.rate)
        for frame in [*src.decode(source), None]:
            for out in resampler.resample(frame):
                dst.mux(stream.encode(out))
        dst.mux(stream.encode(None))
    return buf.getvalue()


def words(text: str) -> list[str]:
    """Lower-case words without punctuation (what WER compares)."""
    return re.findall(r"[a-z0-9']+", text.lower())


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance (substitutions, insertions, deletions) over the reference's words."""
    ref, hyp = words(reference), words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / max(1, len(ref))
