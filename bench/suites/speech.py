"""Suite "speech": the speech model (``voxtral-mini-latest``: faster-whisper, Whisper base int8) in-process, on
speech synthesised by espeak-ng (installed by ``make bench``) from known sentences, so the word error rate is exact.

(a) in-process: each clip decoded (PyAV) and transcribed on its own, one after another, by the gateway's own loader
    and engine in a separate process (``bench/speech_direct.py``). Throughput is seconds of audio per wall second
    (the inverse of the real-time factor, shown in the notes); p50/p99 are per-clip latencies; the notes show the
    time to the first segment. Checks: word error rate <= 0.10 and English detected on every clip.

The API side (``POST /v1/audio/transcriptions`` against this baseline) joins this suite with that operation.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from core import BenchConfig, Check, Row, Sample

from .embeddings import _json_process, _log
from .embeddings import _row as _embeddings_row

__all__ = ["CORPUS", "MAX_WER", "run"]

SUITE = "speech"
MODEL = "voxtral-mini-latest"
MAX_WER = 0.10
BENCH_DIR = Path(__file__).resolve().parent.parent
TESTS_DIR = BENCH_DIR.parent / "tests"
# Clips of about 5 to 25 seconds: short requests and ones near Whisper's 30-second window.
CORPUS = (
    "Please open the window and turn on the light.",
    "The train to London leaves at nine in the morning, and the next one leaves an hour later.",
    "Good morning everyone. Today we will talk about the weather in the north of the country. It will be cold and "
    "windy, with some rain in the afternoon. Please remember to bring a warm coat and an umbrella.",
    "My sister plays the piano every evening after dinner. She has been practising for years, and next month she "
    "will play in a small concert at the school. Our parents are very proud of her, and so am I.",
    "We bought fresh bread, cheese and apples at the market on Saturday.",
    "The children are reading a book about dogs, cats and other animals that live on a farm.",
)


def _speech_material() -> Any:
    """tests/speech_material.py: espeak-ng and the word error rate, shared with the speech tests."""
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    import speech_material

    return speech_material


def _corpus(workdir: Path) -> Path:
    material = _speech_material()
    if not material.espeak_available():
        raise SystemExit(material.ESPEAK_MISSING)
    items = []
    for n, text in enumerate(CORPUS):
        path = workdir / f"speech-{n}.wav"
        material.espeak(text, path)
        items.append({"audio": str(path), "text": text})
    corpus = workdir / "speech-corpus.json"
    corpus.write_text(json.dumps(items))
    return corpus


def _sample(round_: dict[str, Any]) -> Sample:
    clips = round_["clips"]
    latencies = sorted(1e3 * c["latency_s"] for c in clips)
    audio = sum(c["audio_s"] for c in clips)
    return Sample(rps=audio / round_["wall_s"], p50_ms=statistics.median(latencies), p99_ms=latencies[-1],
                  errors=0, requests=len(clips), duration_s=round_["wall_s"], server_cpu_s=round_["cpu_s"])


def _quality(rounds: list[dict[str, Any]]) -> tuple[float, bool]:
    """The word error rate over every clip of every round (edits over reference words), and whether every clip
    was detected as English."""
    material = _speech_material()
    edits = words = 0.0
    english = True
    for round_ in rounds:
        for clip, text in zip(round_["clips"], CORPUS, strict=True):
            count = len(material.words(text))
            edits += material.wer(text, clip["text"]) * count
            words += count
            english &= clip["language"] == "en"
    return edits / max(words, 1), english


def run(config: BenchConfig) -> list[Row]:
    corpus = _corpus(config.workdir)
    data_dir = config.workdir / "gateway-data"
    _log(f"  in-process {MODEL}: {len(CORPUS)} espeak-ng clips, {config.rounds} round(s)")
    report = _json_process([sys.executable, str(BENCH_DIR / "speech_direct.py"), "--corpus", str(corpus),
                            "--data-dir", str(data_dir), "--model", MODEL, "--rounds", str(config.rounds)])
    samples = [_sample(r) for r in report["rounds"]]
    for n, sample in enumerate(samples, 1):
        _log(f"  round {n}/{config.rounds}  {sample.rps:6.2f} audio s/s  p50 {sample.p50_ms:8.1f} ms  "
             f"p99 {sample.p99_ms:8.1f} ms")
    row = _embeddings_row(f"in-process transcribe, {len(CORPUS)} clips one at a time", "transcribe(), in-process",
                          samples, "audio s/s", suite=SUITE)
    error_rate, english = _quality(report["rounds"])
    row.checks = [Check("word error rate", f"<= {MAX_WER:g}", f"{error_rate:.3f}", error_rate <= MAX_WER),
                  Check("language detected", "en on every clip", "en" if english else "other", english)]
    first = [1e3 * c["first_segment_s"] for r in report["rounds"] for c in r["clips"] if c["first_segment_s"]]
    audio_s = sum(c["audio_s"] for c in report["rounds"][0]["clips"])
    row.notes += [f"info: real-time factor {1 / row.rps:.3f} (wall seconds per audio second; {audio_s:.0f} s of "
                  f"audio per round)" if row.rps else "info: no throughput measured",
                  f"info: first segment after {statistics.median(first):.0f} ms (median over clips)"]
    return [row]
