"""The OCR benchmark's rows from measured rounds (no model, no server): pages per second, time per page, and the
accuracy check (1.0 for a text layer, >= 0.9 for scans)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load_suite() -> ModuleType:
    sys.path.insert(0, str(BENCH))  # bench modules import each other by top-level name, as bench/run.py runs them
    try:
        return importlib.import_module("suites.ocr")
    finally:
        sys.path.remove(str(BENCH))


ocr = _load_suite()


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
