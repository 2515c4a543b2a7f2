"""Suite "moderation": POST /v1/moderations on the real moderation model (``mistral-moderation-latest``: MiniLM and
the bundled heads, Presidio and profanity features) against the same model called in-process.

(a) 1,000 short texts as ONE request, vs ``classify`` on the same 1,000 texts in a separate process that loads the
    model with the gateway's own loader. Target: API throughput (inputs/s) >= 0.8x in-process.
(b) the same 1,000 texts as 1,000 single-input requests from 16 concurrent clients (inputs/s, shown against (a)'s
    in-process figure; no target).
(c) single short inputs, one client, one request at a time: latency p50/p99.

The load comes from ``bench/embed_load.py`` (aiohttp + uvloop) in its own process. Rounds are interleaved and
alternate their order, as in the other suites; the table shows medians. In rows measured in inputs, ``req/s`` is
inputs per second and ``CPU us/unit`` server CPU time per input.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import BenchConfig, Check, Row, Sample, min_ratio
from servers import Server, free_port, launched

from . import embeddings
from .embeddings import _json_process, corpus
from .models import _create_token, _gateway_command, _gateway_env

__all__ = ["CLIENTS", "INPUTS", "MIN_BATCH_RATIO", "run"]

SUITE = "moderation"
MODEL = "mistral-moderation-latest"
PATH = "/v1/moderations"
MARKER = '"category_scores"'  # once per input in an answer
INPUTS = 1000
CLIENTS = 16
LATENCY_REQUESTS = 200
MIN_BATCH_RATIO = 0.8
HELD_OUT_MACRO = 0.85  # issue 11's targets
HELD_OUT_EACH = 0.75
BENCH_DIR = Path(__file__).resolve().parent.parent


def _load(server: Server, token: str, corpus_file: Path, *, batch: int, clients: int, limit: int = 0
          ) -> tuple[dict[str, Any], float]:
    return embeddings._load(server, token, corpus_file, batch=batch, clients=clients, limit=limit, model=MODEL,
                            extra=("--path", PATH, "--marker", MARKER))


def _sample(report: dict[str, Any], cpu: float, unit: str) -> Sample:
    count = report["texts"] if unit == "inputs" else report["requests"]
    return Sample(rps=count / report["wall_s"], p50_ms=report["p50_ms"], p99_ms=report["p99_ms"],
                  errors=report["errors"], requests=count, duration_s=report["wall_s"], server_cpu_s=cpu)


def _direct_samples(corpus_file: Path, data_dir: Path) -> list[Sample]:
    report = _json_process([sys.executable, str(BENCH_DIR / "moderation_direct.py"), "--corpus", str(corpus_file),
                            "--data-dir", str(data_dir), "--model", MODEL, "--rounds", "1"])
    texts = report["texts"]
    return [Sample(rps=texts / r["wall_s"], p50_ms=1e3 * r["wall_s"], p99_ms=1e3 * r["wall_s"], errors=0,
                   requests=texts, duration_s=r["wall_s"], server_cpu_s=r["cpu_s"]) for r in report["rounds"]]


def _row(scenario: str, url: str, samples: list[Sample], unit: str, baseline: str | None = None) -> Row:
    return embeddings._row(scenario, url, samples, unit, baseline, suite=SUITE)


def _held_out() -> tuple[list[Check], str]:
    """The shipped model's held-out figures (``bench/moderation_heldout.json``, written by
    ``scripts/eval_moderation.py`` and re-measured by tests/integration/test_moderation_model.py), so results.json
    carries them beside the speed they were served at."""
    figures = json.loads((Path(__file__).resolve().parents[1] / "moderation_heldout.json").read_text())
    macro = figures.pop("macro_f1")
    lowest = min(figures, key=lambda c: figures[c]["f1"])
    checks = [Check("held-out macro F1", f">= {HELD_OUT_MACRO:g}", f"{macro:.3f}", macro >= HELD_OUT_MACRO),
              Check("held-out F1 of every category", f">= {HELD_OUT_EACH:g}",
                    f"{figures[lowest]['f1']:.3f} ({lowest})", figures[lowest]["f1"] >= HELD_OUT_EACH)]
    per_category = ", ".join(f"{c} {v['f1']:.3f}" for c, v in figures.items())
    return checks, f"info: held-out F1 per category (precision/recall in the file): {per_category}"


def run(config: BenchConfig) -> list[Row]:
    gateway, env = _gateway_command(), _gateway_env()
    data_dir = config.workdir / "gateway-data"
    token = _create_token(gateway, data_dir, env)
    corpus_file = config.workdir / "corpus.json"
    corpus_file.write_text(json.dumps(corpus(INPUTS)))
    names = {
        "direct": f"in-process classify, {INPUTS} texts at once",
        "batched": f"POST {PATH}, {INPUTS} inputs in one request",
        "singles": f"{INPUTS} single-input requests, {CLIENTS} clients",
        "latency": "single short input, one client",
    }
    samples: dict[str, list[Sample]] = {key: [] for key in names}
    port = free_port()
    with launched("gateway", [gateway, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                              str(data_dir)], port=port, env=env, log_path=config.workdir / "gateway.log") as gw:
        embeddings._log(f"  gateway {gw.base_url} (pid {gw.proc.pid}); loading {MODEL} with a warm-up request")
        _load(gw, token, corpus_file, batch=16, clients=1, limit=64)  # loads the model, warms it up

        steps: list[tuple[str, Callable[[], Sample]]] = [
            ("direct", lambda: _direct_samples(corpus_file, data_dir)[0]),
            ("batched", lambda: _sample(*_load(gw, token, corpus_file, batch=INPUTS, clients=1), "inputs")),
            ("singles", lambda: _sample(*_load(gw, token, corpus_file, batch=1, clients=CLIENTS), "inputs")),
            ("latency", lambda: _sample(*_load(gw, token, corpus_file, batch=1, clients=1,
                                               limit=LATENCY_REQUESTS), "requests")),
        ]
        for round_no in range(config.rounds):
            for key, step in steps if round_no % 2 == 0 else list(reversed(steps)):
                samples[key].append(step())
                last = samples[key][-1]
                embeddings._log(f"  round {round_no + 1}/{config.rounds}  {names[key]:<48} {last.rps:>8.1f}/s  "
                     f"p50 {last.p50_ms:8.1f} ms  p99 {last.p99_ms:8.1f} ms  errors {last.errors}  "
                     f"CPU {last.server_cpu_percent:3.0f}%")

    direct = _row(names["direct"], "classify(1000 texts), in-process", samples["direct"], "inputs/s")
    direct.notes.append("info: p50/p99 is the wall time of the whole classify call")
    direct.checks, held_out = _held_out()
    direct.notes.append(held_out)
    batched = _row(names["batched"], PATH, samples["batched"], "inputs/s", baseline=names["direct"])
    batched.notes.append("info: p50/p99 is the one request's latency")
    singles = _row(names["singles"], PATH, samples["singles"], "inputs/s", baseline=names["direct"])
    latency = _row(names["latency"], PATH, samples["latency"], "req/s")
    for row in (batched, singles):
        row.ratio = row.rps / direct.rps if row.rps is not None and direct.rps else None
    batched.checks = [min_ratio(batched, MIN_BATCH_RATIO)]
    singles.notes.append("info: no target; the micro-batcher merges concurrent single inputs")
    return [direct, batched, singles, latency]
