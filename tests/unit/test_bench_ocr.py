"""The OCR benchmark's rows from measured rounds (no model, no server): pages per second, time per page, and the
accuracy check (1.0 for a text layer, >= 0.9 for scans)."""

from __future__ import annotations

from bench_modules import bench_module

ocr = bench_module("suites.ocr")


def test_rows_give_pages_per_second_time_per_page_and_the_accuracy_check() -> None:
    runs = [{"wall_s": 8.0, "cpu_s": 6.0, "similarity": 0.97}, {"wall_s": 12.0, "cpu_s": 7.0, "similarity": 0.99}]
    row = ocr._row("scan", "x", runs, 4, {"scan": True})
    assert row.unit == "pages/s"
    assert row.rps == (4 / 8 + 4 / 12) / 2
    assert row.p50_ms == (2000 + 3000) / 2 and row.p99_ms == 3000
    [check] = row.checks
    assert (check.passed, check.measured, check.goal) == (True, "0.980", ">= 0.9")


def test_a_text_layer_below_exact_fails_its_check() -> None:
    row = ocr._row("text", "x", [{"wall_s": 0.1, "similarity": 0.999}], 4, {"scan": False})
    [check] = row.checks
    assert not check.passed and check.goal == ">= 1"
