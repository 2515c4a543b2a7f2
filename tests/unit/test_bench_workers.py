"""The workers benchmark's pure parts: it is a registered suite, and the scaling note per added worker process."""

from __future__ import annotations

from bench_modules import bench_module


def test_the_suite_is_registered() -> None:
    suites = bench_module("suites")
    workers = bench_module("suites.workers")
    assert suites.SUITES["workers"] is workers.run and workers.WORKER_COUNTS == (1, 2, 4)


def test_scaling_per_added_worker() -> None:
    note = bench_module("suites.workers").per_worker_note
    assert note(2000.0, 1000.0, 2) == "2.00x of --workers 1; +100% per added worker"
    assert note(1600.0, 1000.0, 4) == "1.60x of --workers 1; +20% per added worker"
    assert note(900.0, 1000.0, 2) == "0.90x of --workers 1; -10% per added worker"
