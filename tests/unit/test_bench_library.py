"""The library_ingest benchmark's rows from measured rounds (no model, no server): the baselines in pages/s and
chunks/s, the ingestion job in both units with its ratio to each, and job times read from the server's stamps."""

from __future__ import annotations

from bench_modules import bench_module

suite = bench_module("suites.library_ingest")


def test_rows_give_the_job_in_pages_and_chunks_per_second_against_each_baseline() -> None:
    direct = {"pages": 4, "chunks": 10, "characters": 9000,
              "rounds": [{"ocr_s": 2.0, "embed_s": 0.5}, {"ocr_s": 4.0, "embed_s": 0.5}]}
    jobs = [{"job_s": 4.0, "client_s": 4.2, "pages": 4}, {"job_s": 5.0, "client_s": 5.1, "pages": 4}]
    ocr, embed, pages, chunks = suite.rows("scan", direct, jobs)
    assert (ocr.unit, ocr.rps, ocr.baseline) == ("pages/s", (2.0 + 1.0) / 2, None)
    assert (embed.unit, embed.rps) == ("chunks/s", 20.0)
    assert (pages.unit, pages.rps, pages.baseline) == ("pages/s", (1.0 + 0.8) / 2, ocr.scenario)
    assert pages.ratio == 0.9 / 1.5
    assert (chunks.unit, chunks.rps, chunks.baseline) == ("chunks/s", (2.5 + 2.0) / 2, embed.scenario)
    assert chunks.ratio == 2.25 / 20.0
    assert (pages.p50_ms, pages.p99_ms) == (4500.0, 5000.0)
    assert "10 chunks of at most 1000 characters" in embed.notes[0]


def test_the_job_time_is_the_servers_from_created_to_processed() -> None:
    assert suite._seconds("2026-12-05T06:50:01.250000Z") - suite._seconds("2026-12-05T06:49:59.000000Z") == 2.25
