"""The printed table and ``results.json``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core import BenchConfig, Row

__all__ = ["format_table", "write_json"]

_COLUMNS = ("suite", "scenario", "req/s", "p50 ms", "p99 ms", "errors", "srv CPU", "CPU us/req", "ratio", "targets")


def _cells(row: Row) -> tuple[str, ...]:
    checks = "; ".join(f"{c.name} {c.goal}: {c.measured} {'PASS' if c.passed else 'FAIL'}" for c in row.checks)
    return (
        row.suite,
        row.scenario,
        f"{row.rps:,.0f}",
        f"{row.p50_ms:.2f}",
        f"{row.p99_ms:.2f}",
        str(row.errors),
        f"{row.server_cpu_percent:.0f}%",
        f"{row.cpu_us_per_request:.0f}" if row.cpu_us_per_request is not None else "-",
        f"{row.ratio:.2f}x" if row.ratio is not None else "(baseline)" if not row.baseline else "-",
        checks or "-",
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
    document = {
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
    path.write_text(json.dumps(document, indent=2) + "\n")
