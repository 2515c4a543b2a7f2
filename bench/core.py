"""What every suite shares: the run configuration, targets, interleaved wrk measurements and result rows."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from servers import Server
from wrk import run_wrk

__all__ = ["BenchConfig", "Check", "Row", "Sample", "Suite", "Target", "max_p99", "measure", "min_ratio", "summarise"]


@dataclass(frozen=True, slots=True)
class BenchConfig:
    workdir: Path  # a fresh temporary directory for this run (data dirs, server logs, body files)
    duration_s: int = 10
    warmup_s: int = 2
    rounds: int = 2
    connections: int = 32
    threads: int = 1


@dataclass(frozen=True, slots=True)
class Target:
    scenario: str  # unique within a suite, e.g. "gateway GET /v1/models (Bearer)"
    server: Server
    path: str  # path and query string
    display: str  # what reports show: the path with secrets redacted
    headers: dict[str, str] = field(default_factory=dict)
    baseline: str | None = None  # the scenario this one's throughput is compared with

    @property
    def url(self) -> str:
        return self.server.base_url + self.path


@dataclass(frozen=True, slots=True)
class Sample:
    """One measured wrk run (after its warm-up)."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    duration_s: float
    server_cpu_s: float

    @property
    def cpu_us_per_request(self) -> float | None:
        return self.server_cpu_s * 1e6 / self.requests if self.requests else None

    @property
    def server_cpu_percent(self) -> float:
        """Server CPU use in % of one core: about 100 means the (single-threaded) server is CPU-bound."""
        return 100.0 * self.server_cpu_s / self.duration_s if self.duration_s else 0.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    goal: str
    measured: str
    passed: bool


@dataclass(slots=True)
class Row:
    suite: str
    scenario: str
    url: str
    rps: float | None  # throughput in ``unit`` (None: the row measures something else, e.g. memory)
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    cpu_us_per_request: float | None  # server CPU time per unit of throughput (request, token, ...)
    server_cpu_percent: float | None
    samples: list[Sample]
    baseline: str | None = None
    ratio: float | None = None  # rps / the baseline's rps
    checks: list[Check] = field(default_factory=list)
    unit: str = "req/s"
    notes: list[str] = field(default_factory=list)  # informational, shown after the checks


Suite = Callable[[BenchConfig], list[Row]]
"""A suite starts its servers, measures its targets, stops the servers and returns one row per target."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _measure_once(target: Target, config: BenchConfig) -> Sample:
    if config.warmup_s > 0:
        run_wrk(target.url, duration_s=config.warmup_s, connections=config.connections, threads=config.threads,
                headers=target.headers)
    cpu_before = target.server.cpu_seconds()
    result = run_wrk(target.url, duration_s=config.duration_s, connections=config.connections,
                     threads=config.threads, headers=target.headers)
    cpu = target.server.cpu_seconds() - cpu_before
    return Sample(rps=result.rps, p50_ms=result.p50_ms, p99_ms=result.p99_ms, errors=result.errors,
                  requests=result.requests, duration_s=result.duration_s, server_cpu_s=cpu)


def measure(targets: Sequence[Target], config: BenchConfig) -> dict[str, list[Sample]]:
    """``config.rounds`` rounds over all targets, interleaved (A B C, then C B A, ...) so that drift in the
    machine's load hits every target alike. Returns each scenario's samples in round order."""
    samples: dict[str, list[Sample]] = {t.scenario: [] for t in targets}
    for round_no in range(config.rounds):
        order = list(targets) if round_no % 2 == 0 else list(reversed(targets))
        for target in order:
            sample = _measure_once(target, config)
            samples[target.scenario].append(sample)
            _log(f"  round {round_no + 1}/{config.rounds}  {target.scenario:<46} {sample.rps:>9.0f} req/s  "
                 f"p50 {sample.p50_ms:6.2f} ms  p99 {sample.p99_ms:6.2f} ms  errors {sample.errors}  "
                 f"server CPU {sample.server_cpu_percent:3.0f}%")
    return samples


def summarise(suite: str, targets: Sequence[Target], samples: dict[str, list[Sample]],
              checks: Callable[[Row], list[Check]] | None = None) -> list[Row]:
    """Median over rounds per target, the throughput ratio to each target's baseline, then the suite's checks."""
    rows: dict[str, Row] = {}
    for target in targets:
        runs = samples[target.scenario]
        cpu = [s.cpu_us_per_request for s in runs if s.cpu_us_per_request is not None]
        rows[target.scenario] = Row(
            suite=suite, scenario=target.scenario, url=target.display,
            rps=statistics.median(s.rps for s in runs),
            p50_ms=statistics.median(s.p50_ms for s in runs),
            p99_ms=statistics.median(s.p99_ms for s in runs),
            errors=sum(s.errors for s in runs),
            cpu_us_per_request=statistics.median(cpu) if cpu else None,
            server_cpu_percent=statistics.median(s.server_cpu_percent for s in runs),
            samples=runs, baseline=target.baseline,
        )
    for row in rows.values():
        base = rows.get(row.baseline) if row.baseline else None
        if base is not None and base.rps and row.rps is not None:
            row.ratio = row.rps / base.rps
        if checks is not None:
            row.checks = checks(row)
    return list(rows.values())


def min_ratio(row: Row, minimum: float) -> Check:
    measured = f"{row.ratio:.2f}x" if row.ratio is not None else "n/a"
    return Check("throughput vs baseline", f">= {minimum:g}x", measured,
                 row.ratio is not None and row.ratio >= minimum)


def max_p99(row: Row, maximum_ms: float) -> Check:
    return Check("p99 latency", f"<= {maximum_ms:g} ms", f"{row.p99_ms:.1f} ms", row.p99_ms <= maximum_ms)
