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
    assert ocr.wrk_window(0.01) == (3, 5)  # a text-layer document: the minimum window
    assert ocr.wrk_window(2.4) == (10, 8)  # a scanned one: four requests, each well inside the timeout


def test_the_post_script_carries_the_body_verbatim() -> None:
    body = b'{"model": "m", "document": {"document_url": "data:application/pdf;base64,QUJD"}}'
    script = ocr.post_script(body)
    assert 'wrk.method = "POST"' in script and f"[==[{body.decode()}]==]" in script
    with pytest.raises(ValueError):
        ocr.post_script(b'{"x": "]==]"}')


def test_a_document_read_in_milliseconds_gets_more_rounds_than_a_slow_one() -> None:
    assert ocr.rounds_for(0.01, 2) == ocr.SHORT_ROUNDS > 2
    assert ocr.rounds_for(0.01, 9) == 9  # never fewer than asked
    assert ocr.rounds_for(2.4, 2) == 2


def test_the_ratio_is_the_median_of_the_pairs_not_a_ratio_of_medians() -> None:
    # the machine slowed down in the middle rounds: each pair saw the same slowdown, so the pairs agree on 0.9x
    direct = [{"wall_s": w} for w in (1.0, 2.0, 2.0, 1.0)]
    api = [{"wall_s": w / 0.9} for w in (1.0, 2.0, 2.0, 1.0)]
    assert ocr.paired_ratio(api, direct) == pytest.approx(0.9)
    drift = [{"wall_s": 1.0}, {"wall_s": 1.0}, {"wall_s": 2.0}]  # an in-process round beside a slow API round
    assert ocr.paired_ratio(drift, [{"wall_s": 1.0}] * 3) == 1.0
    assert ocr.paired_ratio([], []) is None


def _runs(*walls: float) -> list[dict[str, float]]:
    return [{"wall_s": w, "cpu_s": w, "similarity": 1.0, "pages": 4} for w in walls]


def test_rows_show_the_api_against_in_process_and_the_floor_without_a_target() -> None:
    runs = {"in-process": _runs(0.008, 0.010), "api": _runs(0.0088, 0.011), "floor": _runs(0.0084, 0.0105)}
    base, api, floor = ocr._rows({"name": "text", "scan": False}, runs, 0.8)
    assert base.ratio is None and api.baseline == floor.baseline == base.scenario
    assert api.ratio == pytest.approx(0.909, abs=1e-3)  # both pairs: 1/1.1
    assert [c.name for c in api.checks] == ["character accuracy", "throughput vs baseline"]
    assert api.checks[1].passed
    assert floor.ratio == pytest.approx(0.9524, abs=1e-3) and floor.checks == []  # informational
    assert any("0.95x of it" in note for note in floor.notes)  # the API against the floor, pair by pair


def test_a_slower_api_fails_its_target_and_a_501_leaves_only_the_in_process_row() -> None:
    runs = {"in-process": _runs(0.008), "api": _runs(0.0092)}
    base, api = ocr._rows({"name": "text", "scan": False}, runs, 0.8)
    assert api.baseline == base.scenario and not api.checks[1].passed and api.checks[1].measured == "0.87x"
    [only] = ocr._rows({"name": "text", "scan": False}, {"in-process": _runs(0.008)}, 0.8)
    assert any("501" in note for note in only.notes)
