"""Imports bench/ modules for unit tests the way bench/run.py runs them (they import each other by top-level name)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["BENCH", "bench_module"]

BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench_module(name: str) -> ModuleType:
    """``bench/<name>.py`` (dotted for packages: ``suites.ocr``), with bench/ on the path only while importing."""
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))
