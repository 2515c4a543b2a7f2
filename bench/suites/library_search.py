"""Suite "library_search": retrieval from the library index (``bench/library_search_direct.py``, each part in its own
process).

(a) Latency at 10k and 100k chunks of 384 dimensions (clustered synthetic vectors, 12-word texts): the local index
    (``LocalChunkIndex``) vector-only and hybrid, side by side with exact numpy search over the same matrix (the
    baseline), interleaved query by query. Targets: p99 <= 20 ms at 100k chunks, recall@10 >= 0.95 against exact.
(b) The same for the pgvector index (``PgVectorChunkIndex``, exact) in a throwaway PostgreSQL 16 cluster run from the
    pgserver wheel's binaries (left out, with a note, when pgserver is not installed).
(c) hit@5 on the project's question set (``bench/library_questions``: made-up documents, questions each naming the
    document that answers it), ingested with the real chunker and the real embedding model (``mistral-embed``), with
    and without keyword scoring (``library_hybrid``). Target >= 0.8. At the default chunk size (1000 characters) and
    at 200 characters (more, smaller chunks: a harder search).

``--duration`` sets nothing here: a round is a fixed number of queries (``QUERIES``); ``--rounds`` runs (a) that many
times, the median round reported.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from core import BenchConfig, Check, Row

from .embeddings import _json_process, _log

__all__ = ["MAX_P99_MS", "MIN_HIT_AT_5", "MIN_RECALL", "run"]

SUITE = "library_search"
BENCH_DIR = Path(__file__).resolve().parent.parent
SIZES = (10_000, 100_000)
QUERIES = 200
MAX_P99_MS = 20.0
MIN_RECALL = 0.95
MIN_HIT_AT_5 = 0.8
CHUNK_SIZES = (1000, 200)


def _direct(*args: str) -> dict[str, Any]:
    return _json_process([sys.executable, str(BENCH_DIR / "library_search_direct.py"), *args], timeout_s=3600)


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _latency_row(runs: list[dict[str, Any]], name: str, scenario: str, baseline: str | None) -> Row:
    p50, p99 = _median(runs, f"{name}_p50_ms"), _median(runs, f"{name}_p99_ms")
    row = Row(suite=SUITE, scenario=scenario, url="in-process", rps=1e3 / p50, p50_ms=p50, p99_ms=p99, errors=0,
              cpu_us_per_request=None, server_cpu_percent=None, samples=[], baseline=baseline, unit="queries/s")
    if baseline is not None:
        row.ratio = _median(runs, "exact_p50_ms") / p50
        if runs[0]["chunks"] == max(SIZES):
            row.checks.append(Check("p99 latency", f"<= {MAX_P99_MS:g} ms", f"{p99:.1f} ms", p99 <= MAX_P99_MS))
    if name == "local":  # the vector ranking against exact search (hybrid ranks by more than vectors)
        recall = _median(runs, "recall_at_10")
        row.checks.append(Check("recall@10 vs exact", f">= {MIN_RECALL:g}", f"{recall:.3f}", recall >= MIN_RECALL))
    if name == "exact":
        row.notes.append(f"info: matrix {runs[0]['matrix_mb']:.0f} MB; index insert "
                         f"{_median(runs, 'insert_s'):.1f} s, cold load (reopen + first query) "
                         f"{_median(runs, 'cold_load_s'):.2f} s")
    row.notes.append("info: queries/s is 1000 / p50 ms (one query at a time); ratio: exact p50 / this p50")
    return row


def _pg_rows(runs: list[dict[str, Any]], size: int, exact: str) -> list[Row]:
    rows = [_latency_row(runs, "pg", f"pgvector index, vector only, {size // 1000}k chunks", exact),
            _latency_row(runs, "pg_hybrid", f"pgvector index, hybrid, {size // 1000}k chunks", exact)]
    recall = _median(runs, "recall_at_10")
    rows[0].checks.append(Check("recall@10 vs exact", f">= {MIN_RECALL:g}", f"{recall:.3f}", recall >= MIN_RECALL))
    rows[0].notes.append(f"info: bulk load (COPY) + VACUUM ANALYZE {_median(runs, 'insert_s'):.1f} s")
    return rows


def _questions_row(result: dict[str, Any], hybrid: bool) -> Row:
    name = "hybrid" if hybrid else "vector"
    hit5, hit1 = result[f"hit_at_5_{name}"], result[f"hit_at_1_{name}"]
    scenario = (f"question set hit@5, {'hybrid (vector + FTS5)' if hybrid else 'vector only'}, "
                f"chunks of {result['chunk_size']} chars")
    row = Row(suite=SUITE, scenario=scenario, url="in-process", rps=None, p50_ms=None, p99_ms=None, errors=0,
              cpu_us_per_request=None, server_cpu_percent=None, samples=[], unit="hit@5")
    row.checks.append(Check("hit@5", f">= {MIN_HIT_AT_5:g}", f"{hit5:.3f}", hit5 >= MIN_HIT_AT_5))
    row.notes.append(f"info: hit@1 {hit1:.3f}; {result['questions']} questions, {result['chunks']} chunks")
    row.notes += [f"info: missed: {q}" for q in result["misses"][name]]
    return row


def run(config: BenchConfig) -> list[Row]:
    rows: list[Row] = []
    for size in SIZES:
        _log(f"  {size} chunks: {config.rounds} round(s) of {QUERIES} queries")
        runs = [_direct("latency", "--chunks", str(size), "--queries", str(QUERIES)) for _ in range(config.rounds)]
        exact = f"numpy exact, {size // 1000}k chunks"
        rows += [_latency_row(runs, "exact", exact, None),
                 _latency_row(runs, "local", f"local index, vector only, {size // 1000}k chunks", exact),
                 _latency_row(runs, "local_hybrid", f"local index, hybrid, {size // 1000}k chunks", exact)]
        pg_runs = [_direct("pgvector", "--chunks", str(size), "--queries", str(QUERIES)) for _ in range(config.rounds)]
        if "skipped" in pg_runs[0]:
            rows[-1].notes.append(f"info: pgvector rows left out: {pg_runs[0]['skipped']}")
        else:
            rows += _pg_rows(pg_runs, size, exact)
    data_dir = config.workdir / "gateway-data"
    for chunk_size in CHUNK_SIZES:
        _log(f"  question set, chunks of {chunk_size} characters")
        result = _direct("questions", "--data-dir", str(data_dir), "--chunk-size", str(chunk_size))
        (config.workdir / f"questions-{chunk_size}.json").write_text(json.dumps(result))
        rows += [_questions_row(result, True), _questions_row(result, False)]
    return rows
