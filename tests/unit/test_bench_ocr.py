"""The OCR benchmark's rows from measured rounds (no model, no server): pages per second, time per page, and the
accuracy check (1.0 for a text layer, >= 0.9 for scans)."""

from __future__ import annotations

import pytest

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


def test_the_wrk_window_holds_about_four_requests_and_never_times_one_out() -> None:
    assert ocr.wrk_window(0.01) == (2, 5)  # a text-layer document: the minimum window
    assert ocr.wrk_window(2.4) == (10, 8)  # a scanned one: four requests, each well inside the timeout


def test_the_post_script_carries_the_body_verbatim() -> None:
    body = b'{"model": "m", "document": {"document_url": "data:application/pdf;base64,QUJD"}}'
    script = ocr.post_script(body)
    assert 'wrk.method = "POST"' in script and f"[==[{body.decode()}]==]" in script
    with pytest.raises(ValueError):
        ocr.post_script(b'{"x": "]==]"}')
