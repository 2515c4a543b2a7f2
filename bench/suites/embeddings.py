"""Suite "embeddings": POST /v1/embeddings on the real all-MiniLM-L6-v2 (``mistral-embed``), against the model
called directly in-process, and concurrent single-text requests against the same requests sent one by one.

(a) 2,000 sentences in requests of 64 texts from one client, vs ``encode`` on the same 64-text pieces in a separate
    process that loads the model with the gateway's own loader (same weights, same torch threads).
    Target: API throughput (texts/s) >= 0.9x direct.
(b) 256 single-text requests from 32 concurrent clients, vs the same 256 requests one at a time.
    Target: >= 3x the sequential request rate (the server's micro-batcher merges concurrent requests).

The load comes from ``bench/embed_load.py`` (aiohttp + uvloop) in its own process. Rounds are interleaved and
alternate their order, as in the other suites; the table shows medians. In rows measured in texts (a), ``req/s``
is texts per second and ``CPU us/unit`` CPU time per text.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import BenchConfig, Check, Row, Sample, min_ratio
from servers import Server, ServerError, free_port, launched

from .models import _create_token, _gateway_command, _gateway_env

__all__ = ["CORPUS_SIZE", "MIN_BATCH_RATIO", "MIN_CONCURRENCY_RATIO", "corpus", "run"]

SUITE = "embeddings"
MODEL = "mistral-embed"
CORPUS_SIZE = 2000
BATCH = 64
SINGLES = 256
MIN_BATCH_RATIO = 0.9
MIN_CONCURRENCY_RATIO = 3.0
BENCH_DIR = Path(__file__).resolve().parent.parent

_SUBJECTS = ("the engineer", "a small startup", "our support team", "the new model", "every customer", "the city",
             "a research group", "the database", "my neighbour", "the committee", "this library", "the pilot")
_VERBS = ("reviewed", "shipped", "rejected", "explained", "measured", "rebuilt", "translated", "questioned",
          "documented", "replaced", "benchmarked", "ignored")
_OBJECTS = ("the quarterly report", "an unexpected error", "the search results", "a long train journey",
            "the embedding vectors", "several hundred invoices", "the weather forecast", "a broken migration",
            "the onboarding guide", "an old photograph", "the pricing page", "a flaky integration test")
_TAILS = ("before lunch", "after a long discussion", "without telling anyone", "for the third time this week",
          "because the deadline moved", "while the servers were being upgraded", "in less than an hour",
          "despite the warnings from the previous audit", "and nobody noticed until the next morning",
          "so that the whole team could finally understand what had gone wrong with the release")


def corpus(size: int = CORPUS_SIZE, seed: int = 20250101) -> list[str]:
    """Deterministic English-like sentences of about 5 to 40 words (most 8 to 20), all distinct."""
    rng = random.Random(seed)
    texts = []
    for i in range(size):
        parts = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)]
        for _ in range(rng.choice((0, 0, 1, 1, 1, 2, 3))):
            parts.append(rng.choice(_TAILS))
        texts.append(f"{' '.join(parts).capitalize()} (note {i}).")
    return texts


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _json_process(argv: list[str], timeout_s: float = 900) -> dict[str, Any]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        raise ServerError(f"{Path(argv[1]).name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _load(server: Server, token: str, corpus_file: Path, *, batch: int, clients: int, limit: int = 0,
          model: str = MODEL, extra: tuple[str, ...] = ()) -> tuple[dict[str, Any], float]:
    """One load-generator run; returns its report and the server's CPU seconds during it. ``extra``: more
    arguments for ``embed_load.py`` (another operation's ``--path`` and ``--marker``)."""
    before = server.cpu_seconds()
    report = _json_process([sys.executable, str(BENCH_DIR / "embed_load.py"), "--url", server.base_url,
                            "--token", token, "--corpus", str(corpus_file), "--model", model, "--batch", str(batch),
                            "--clients", str(clients), "--limit", str(limit), *extra])
    cpu = server.cpu_seconds() - before
    if report["errors"]:
        _log(f"    {report['errors']} failed request(s), first: {report['first_error']}")
    return report, cpu


def _api_sample(report: dict[str, Any], cpu: float, unit: str) -> Sample:
    count = report["texts"] if unit == "texts" else report["requests"]
    return Sample(rps=count / report["wall_s"], p50_ms=report["p50_ms"], p99_ms=report["p99_ms"],
                  errors=report["errors"], requests=count, duration_s=report["wall_s"], server_cpu_s=cpu)


def _direct_samples(corpus_file: Path, data_dir: Path, rounds: int) -> tuple[list[Sample], list[Sample]]:
    report = _json_process([sys.executable, str(BENCH_DIR / "embed_direct.py"), "--corpus", str(corpus_file),
                            "--data-dir", str(data_dir), "--model", MODEL, "--batch", str(BATCH),
                            "--rounds", str(rounds)])
    texts, batches = report["texts"], report["batches"]

    def sample(run: dict[str, float]) -> Sample:
        per_batch_ms = 1e3 * run["wall_s"] / batches  # a batch's encode time stands in for a request's latency
        return Sample(rps=texts / run["wall_s"], p50_ms=per_batch_ms, p99_ms=per_batch_ms, errors=0, requests=texts,
                      duration_s=run["wall_s"], server_cpu_s=run["cpu_s"])

    return [sample(r["chunks"]) for r in report["rounds"]], [sample(r["whole"]) for r in report["rounds"]]


def _row(scenario: str, url: str, samples: list[Sample], unit: str, baseline: str | None = None,
         suite: str = SUITE) -> Row:
    cpu = [s.cpu_us_per_request for s in samples if s.cpu_us_per_request is not None]
    return Row(suite=suite, scenario=scenario, url=url, rps=statistics.median(s.rps for s in samples),
               p50_ms=statistics.median(s.p50_ms for s in samples), p99_ms=statistics.median(s.p99_ms for s in samples),
               errors=sum(s.errors for s in samples), cpu_us_per_request=statistics.median(cpu) if cpu else None,
               server_cpu_percent=statistics.median(s.server_cpu_percent for s in samples), samples=samples,
               baseline=baseline, unit=unit)


def _rate(row: Row, base: Row, minimum: float) -> list[Check]:
    row.ratio = row.rps / base.rps if row.rps is not None and base.rps else None
    return [min_ratio(row, minimum)]


def run(config: BenchConfig) -> list[Row]:
    gateway = _gateway_command()
    env = _gateway_env()
    data_dir = config.workdir / "gateway-data"
    token = _create_token(gateway, data_dir, env)
    corpus_file = config.workdir / "corpus.json"
    corpus_file.write_text(json.dumps(corpus()))
    names = {
        "direct": "direct encode, 64-text batches",
        "whole": "direct encode, whole corpus at once",
        "api": "POST /v1/embeddings, 64 texts/request",
        "seq": "single-text requests, one at a time",
        "conc": f"single-text requests, {config.connections} clients",
    }
    samples: dict[str, list[Sample]] = {key: [] for key in names}

    port = free_port()
    with launched("gateway", [gateway, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                              str(data_dir)], port=port, env=env, log_path=config.workdir / "gateway.log") as gw:
        _log(f"  gateway {gw.base_url} (pid {gw.proc.pid}); loading {MODEL} with a warm-up request")
        _load(gw, token, corpus_file, batch=BATCH, clients=1, limit=2 * BATCH)  # loads the model, warms it up

        def api() -> None:
            samples["api"].append(_api_sample(*_load(gw, token, corpus_file, batch=BATCH, clients=1), "texts"))

        def direct() -> None:
            chunks, whole = _direct_samples(corpus_file, data_dir, 1)
            samples["direct"] += chunks
            samples["whole"] += whole

        def sequential() -> None:
            samples["seq"].append(_api_sample(*_load(gw, token, corpus_file, batch=1, clients=1, limit=SINGLES),
                                              "requests"))

        def concurrent() -> None:
            samples["conc"].append(_api_sample(*_load(gw, token, corpus_file, batch=1, clients=config.connections,
                                                      limit=SINGLES), "requests"))

        steps: list[tuple[str, Callable[[], None]]] = [("direct", direct), ("api", api), ("seq", sequential),
                                                       ("conc", concurrent)]
        for round_no in range(config.rounds):
            order = steps if round_no % 2 == 0 else list(reversed(steps))
            for key, step in order:
                step()
                last = samples[key][-1]
                _log(f"  round {round_no + 1}/{config.rounds}  {names[key]:<50} {last.rps:>8.1f}/s  "
                     f"p50 {last.p50_ms:7.1f} ms  p99 {last.p99_ms:7.1f} ms  errors {last.errors}  "
                     f"CPU {last.server_cpu_percent:3.0f}%")

    direct_row = _row(names["direct"], "encode(64 texts) x 32, in-process", samples["direct"], "texts/s")
    whole_row = _row(names["whole"], "encode(2000 texts), in-process", samples["whole"], "texts/s")
    whole_row.notes.append("info: encode sorts the whole corpus by length (least padding)")
    api_row = _row(names["api"], "/v1/embeddings", samples["api"], "texts/s", baseline=names["direct"])
    seq_row = _row(names["seq"], "/v1/embeddings", samples["seq"], "req/s")
    conc_row = _row(names["conc"], "/v1/embeddings", samples["conc"], "req/s", baseline=names["seq"])
    api_row.checks = _rate(api_row, direct_row, MIN_BATCH_RATIO)
    conc_row.checks = _rate(conc_row, seq_row, MIN_CONCURRENCY_RATIO)
    return [direct_row, whole_row, api_row, seq_row, conc_row]
