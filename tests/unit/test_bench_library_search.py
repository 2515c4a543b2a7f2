"""The library_search benchmark's rows from measured runs (no model, no index): latency rows with their targets at
100k chunks, recall on the vector ranking only, hit@5 rows with the missed questions; and the question set's
integrity (every question names a shipped document)."""

from __future__ import annotations

import json

from bench_modules import BENCH, bench_module

suite = bench_module("suites.library_search")


def _run(chunks: int, local_p99: float, recall: float) -> dict[str, float]:
    return {"chunks": chunks, "matrix_mb": 146.0, "insert_s": 20.0, "cold_load_s": 0.4, "recall_at_10": recall,
            "exact_p50_ms": 10.0, "exact_p99_ms": 15.0, "local_p50_ms": 12.5, "local_p99_ms": local_p99,
            "local_hybrid_p50_ms": 20.0, "local_hybrid_p99_ms": 30.0}


def test_latency_rows_check_p99_at_100k_and_recall_of_the_vector_ranking() -> None:
    runs = [_run(100_000, 18.0, 1.0), _run(100_000, 25.0, 0.9)]
    row = suite._latency_row(runs, "local", "local", "exact")
    assert row.rps == 1e3 / 12.5 and row.ratio == 10.0 / 12.5
    assert [(c.name, c.passed) for c in row.checks] == [("p99 latency", False), ("recall@10 vs exact", True)]
    hybrid = suite._latency_row(runs, "local_hybrid", "hybrid", "exact")
    assert [c.name for c in hybrid.checks] == ["p99 latency"]  # hybrid ranks by more than vectors: no recall
    small = suite._latency_row([_run(10_000, 50.0, 1.0)], "local", "local", "exact")
    assert [c.name for c in small.checks] == ["recall@10 vs exact"]  # the latency target is set at 100k
    assert suite._latency_row(runs, "exact", "exact", None).checks == []


def test_question_rows_report_hit_at_5_and_the_misses() -> None:
    result = {"questions": 4, "chunks": 9, "chunk_size": 200, "hit_at_5_hybrid": 1.0, "hit_at_5_vector": 0.75,
              "hit_at_1_hybrid": 0.75, "hit_at_1_vector": 0.5, "misses": {"hybrid": [], "vector": ["Who?"]}}
    hybrid, vector = suite._questions_row(result, True), suite._questions_row(result, False)
    assert [(c.measured, c.passed) for c in hybrid.checks + vector.checks] == [("1.000", True), ("0.750", False)]
    assert "info: missed: Who?" in vector.notes and "chunks of 200 chars" in vector.scenario


def test_every_question_names_a_shipped_document_and_every_document_is_asked_about() -> None:
    folder = BENCH / "library_questions"
    cases = json.loads((folder / "questions.json").read_text())
    documents = {p.name for p in (folder / "documents").iterdir()}
    assert len(cases) >= 40 and len({c["question"] for c in cases}) == len(cases)
    assert {c["document"] for c in cases} == documents
