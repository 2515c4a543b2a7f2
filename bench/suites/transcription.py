"""Suite "transcription": ``POST /v1/audio/transcriptions`` against the same model called in-process, on the speech
suite's espeak-ng clips (``bench/suites/speech.py``: corpus, in-process runner, word error rate).

(a) in-process: each clip decoded and transcribed on its own, one after another (``bench/speech_direct.py``).
(b) the API: the same clips uploaded one after another by one client, whole answers. Target: throughput (seconds
    of audio per wall second) >= 0.9x in-process; the same word error rate.
(c) the API streamed (``stream=true``): the time to the first ``transcription.text.delta`` (p50/p99 columns).

Rounds alternate their order, as in the other suites; the table shows medians.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import wave
from pathlib import Path
from typing import Any

import httpx
from core import BenchConfig, Check, Row, Sample, min_ratio
from servers import Server, free_port, launched

from . import speech
from .embeddings import _json_process, _log
from .embeddings import _row as _embeddings_row
from .models import _create_token, _gateway_command, _gateway_env

__all__ = ["MIN_RATIO", "run"]

SUITE = "transcription"
PATH = "/v1/audio/transcriptions"
MIN_RATIO = 0.9


def _clips(corpus: Path) -> list[tuple[bytes, float, str]]:
    """(WAV bytes, seconds, reference text) of each clip."""
    out = []
    for item in json.loads(corpus.read_text()):
        data = Path(item["audio"]).read_bytes()
        with wave.open(item["audio"]) as wav:
            out.append((data, wav.getnframes() / wav.getframerate(), item["text"]))
    return out


def _post(client: httpx.Client, token: str, data: bytes, **fields: str) -> httpx.Response:
    return client.post(PATH, headers={"Authorization": f"Bearer {token}"}, files={"file": ("clip.wav", data)},
                       data={"model": speech.MODEL, **fields})


def _api_round(server: Server, token: str, clips: list[tuple[bytes, float, str]]) -> tuple[Sample, list[str]]:
    latencies, texts, errors = [], [], 0
    before, started = server.cpu_seconds(), time.perf_counter()
    with httpx.Client(base_url=server.base_url, timeout=600) as client:
        for data, _seconds, _text in clips:
            t0 = time.perf_counter()
            r = _post(client, token, data)
            latencies.append(1e3 * (time.perf_counter() - t0))
            errors += r.status_code != 200
            texts.append(r.json().get("text", "") if r.status_code == 200 else "")
    wall = time.perf_counter() - started
    audio = sum(seconds for _, seconds, _ in clips)
    return Sample(rps=audio / wall, p50_ms=statistics.median(latencies), p99_ms=max(latencies), errors=errors,
                  requests=len(clips), duration_s=wall, server_cpu_s=server.cpu_seconds() - before), texts


def _first_delta_round(server: Server, token: str, clips: list[tuple[bytes, float, str]]) -> Sample:
    firsts, errors = [], 0
    before, started = server.cpu_seconds(), time.perf_counter()
    with httpx.Client(base_url=server.base_url, timeout=600) as client:
        for data, _seconds, _text in clips:
            t0 = time.perf_counter()
            with client.stream("POST", PATH, headers={"Authorization": f"Bearer {token}"},
                               files={"file": ("clip.wav", data)},
                               data={"model": speech.MODEL, "stream": "true"}) as r:
                first = None
                for line in r.iter_lines():
                    if first is None and line == "event: transcription.text.delta":
                        first = 1e3 * (time.perf_counter() - t0)
                errors += r.status_code != 200 or first is None
                firsts.append(first if first is not None else 1e3 * (time.perf_counter() - t0))
    wall = time.perf_counter() - started
    return Sample(rps=len(clips) / wall, p50_ms=statistics.median(firsts), p99_ms=max(firsts), errors=errors,
                  requests=len(clips), duration_s=wall, server_cpu_s=server.cpu_seconds() - before)


def _wer(texts: list[list[str]], clips: list[tuple[bytes, float, str]]) -> float:
    material = speech._speech_material()
    edits = words = 0.0
    for round_texts in texts:
        for text, (_, _, reference) in zip(round_texts, clips, strict=True):
            count = len(material.words(reference))
            edits += material.wer(reference, text) * count
            words += count
    return edits / max(words, 1)


def run(config: BenchConfig) -> list[Row]:
    corpus = speech._corpus(config.workdir)
    clips = _clips(corpus)
    gateway, env = _gateway_command(), _gateway_env()
    data_dir = config.workdir / "gateway-data"
    token = _create_token(gateway, data_dir, env)
    names = {"direct": f"in-process transcribe, {len(clips)} clips one at a time",
             "api": f"POST {PATH}, {len(clips)} clips one at a time",
             "first": f"POST {PATH} stream=true: first text delta"}
    samples: dict[str, list[Sample]] = {key: [] for key in names}
    api_texts: list[list[str]] = []
    direct_rounds: list[dict[str, Any]] = []
    port = free_port()
    with launched("gateway", [gateway, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                              str(data_dir)], port=port, env=env, log_path=config.workdir / "gateway.log") as gw:
        _log(f"  gateway {gw.base_url} (pid {gw.proc.pid}); loading {speech.MODEL} with a warm-up request")
        with httpx.Client(base_url=gw.base_url, timeout=600) as client:
            _post(client, token, clips[0][0]).raise_for_status()

        def direct() -> Sample:
            report = _json_process([sys.executable, str(speech.BENCH_DIR / "speech_direct.py"), "--corpus",
                                    str(corpus), "--data-dir", str(data_dir), "--model", speech.MODEL, "--rounds",
                                    "1"])
            direct_rounds.extend(report["rounds"])
            return speech._sample(report["rounds"][0])

        def api() -> Sample:
            sample, texts = _api_round(gw, token, clips)
            api_texts.append(texts)
            return sample

        steps = [("direct", direct), ("api", api), ("first", lambda: _first_delta_round(gw, token, clips))]
        for round_no in range(config.rounds):
            for key, step in steps if round_no % 2 == 0 else list(reversed(steps)):
                samples[key].append(step())
                last = samples[key][-1]
                _log(f"  round {round_no + 1}/{config.rounds}  {names[key]:<52} {last.rps:8.2f}/s  "
                     f"p50 {last.p50_ms:8.1f} ms  p99 {last.p99_ms:8.1f} ms  errors {last.errors}")

    direct_row = _embeddings_row(names["direct"], "transcribe(), in-process", samples["direct"], "audio s/s",
                                 suite=SUITE)
    api_row = _embeddings_row(names["api"], PATH, samples["api"], "audio s/s", baseline=names["direct"],
                              suite=SUITE)
    api_row.ratio = api_row.rps / direct_row.rps if api_row.rps is not None and direct_row.rps else None
    direct_wer, _ = speech._quality(direct_rounds)
    api_wer = _wer(api_texts, clips)
    api_row.checks = [min_ratio(api_row, MIN_RATIO),
                      Check("word error rate", f"<= {speech.MAX_WER:g}", f"{api_wer:.3f}", api_wer <= speech.MAX_WER)]
    api_row.notes.append(f"info: word error rate in-process {direct_wer:.3f}, API {api_wer:.3f}")
    first_row = _embeddings_row(names["first"], PATH, samples["first"], "req/s", suite=SUITE)
    first_row.notes.append("info: p50/p99 is the time from sending a clip to its first transcription.text.delta")
    return [direct_row, api_row, first_row]
