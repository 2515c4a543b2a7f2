"""The limits benchmark's rows from measured runs (no server): medians over rounds, in microseconds per check, and
each store's ratio to the no-limits baseline of as many threads."""

from __future__ import annotations

from bench_modules import bench_module

suite = bench_module("suites.limits")


def _run(rate: float, p50_us: float, p99_us: float) -> dict[str, float]:
    return {"checks_per_s": rate, "checks": int(rate * 2), "p50_us": p50_us, "p99_us": p99_us, "cpu_s": 1.0}


def test_rows_carry_medians_and_the_ratio_to_the_baseline_of_as_many_threads() -> None:
    rows = suite.rows_of({
        ("none", 1): [_run(1e6, 0.2, 0.5), _run(2e6, 0.2, 0.5), _run(3e6, 0.4, 0.9)],
        ("redis", 1): [_run(2000, 200, 900), _run(3000, 150, 800), _run(4000, 100, 700)],
        ("redis", 4): [_run(5000, 600, 2000)],  # no baseline of 4 threads measured: no ratio
    })
    base, redis, redis4 = rows
    assert base.scenario == "no limits (baseline), 1 thread(s)" and base.ratio is None and base.baseline is None
    assert redis.rps == 3000 and redis.p50_ms == 0.15 and redis.p99_ms == 0.8 and redis.unit == "checks/s"
    assert redis.baseline == base.scenario and redis.ratio == 3000 / 2e6
    assert "info: one check p50 150.0 us, p99 800.0 us" in redis.notes
    assert any("149.8 us more per request" in note for note in redis.notes)
    assert redis4.ratio is None and redis4.baseline == "no limits (baseline), 4 thread(s)"
