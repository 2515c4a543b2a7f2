"""The printed table and ``results.json``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core import BenchConfig, Row

__all__ = ["format_table", "write_json"]

_COLUMNS = ("suite", "scenario", "throughput", "p50 ms", "p99 ms", "errors", "srv CPU", "CPU us/unit", "ratio",
            "targets")


def _throughput(row: Row) -> str:
    if row.rps is None:
        return "-"
    return f"{row.rps:,.0f} {row.unit}" if row.rps >= 1000 else f"{row.rps:,.1f} {row.unit}"


def _cells(row: Row) -> tuple[str, ...]:
    checks = [f"{c.name} {c.goal}: {c.measured} {'PASS' if c.passed else 'FAIL'}" for c in row.checks]
    targets = "; ".join(checks + row.notes)
    return (
        row.suite,
        row.scenario,
        _throughput(row),
        f"{row.p50_ms:.2f}" if row.p50_ms is not None else "-",
        f"{row.p99_ms:.2f}" if row.p99_ms is not None else "-",
        str(row.errors),
        f"{row.server_cpu_percent:.0f}%" if row.server_cpu_percent is not None else "-",
        f"{row.cpu_us_per_request:.0f}" if row.cpu_us_per_request is not None else "-",
        f"{row.ratio:.2f}x" if row.ratio is not None else "(baseline)" if not row.baseline and row.rps else "-",
        targets or "-",
    )


def format_table(rows: Sequence[Row]) -> str:
    cells = [_COLUMNS, *(_cells(r) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(_COLUMNS))]
    numeric = {2, 3, 4, 5, 6, 7, 8}

    def line(values: Sequence[str]) -> str:
        pairs = enumerate(zip(values, widths, strict=True))
        parts = [v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in pairs]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(_COLUMNS), rule, *(line(c) for c in cells[1:])])


def _row_json(row: Row) -> dict[str, Any]:
    data = dataclasses.asdict(row)
    data["throughput_rps"] = data.pop("rps")
    data["ratio_vs_baseline"] = data.pop("ratio")
    for sample, raw in zip(data["samples"], row.samples, strict=True):
        sample["cpu_us_per_request"] = raw.cpu_us_per_request
        sample["server_cpu_percent"] = raw.server_cpu_percent
    return data


def write_json(path: Path, machine: dict[str, Any], config: BenchConfig, suites: Sequence[str],
               rows: Sequence[Row]) -> None:
    """Write this run's rows; rows of suites this run did not measure stay, with their own run's machine and config
    under ``runs`` (so ``--suite X`` refreshes X without dropping the others)."""
    document: dict[str, Any] = {
        "machine": machine,
        "config": {
            "suites": list(suites),
            "duration_s": config.duration_s,
            "warmup_s": config.warmup_s,
            "rounds": config.rounds,
            "connections": config.connections,
            "wrk_threads": config.threads,
            "aggregation": "median over rounds; errors summed; ratio = median rps / baseline's median rps",
        },
        "results": [_row_json(r) for r in rows],
    }
    runs = {suite: {"machine": machine, "config": document["config"]} for suite in suites}
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        previous = None
    if isinstance(previous, dict) and isinstance(previous.get("results"), list):
        earlier = previous.get("runs") or {
            suite: {"machine": previous.get("machine"), "config": previous.get("config")}
            for suite in (previous.get("config") or {}).get("suites", [])}
        kept = [r for r in previous["results"] if r.get("suite") not in suites]
        document["results"] = kept + document["results"]
        runs = {suite: run for suite, run in earlier.items() if suite not in suites} | runs
    document["runs"] = runs
    path.write_text(json.dumps(document, indent=2) + "\n")
