"""The printed table and ``results.json``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core import BenchConfig, Row
from provenance import UNKNOWN

__all__ = ["FORMAT", "config_json", "format_table", "upgrade", "write_json"]

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


def config_json(config: BenchConfig, suites: Sequence[str]) -> dict[str, Any]:
    return {
        "suites": list(suites),
        "duration_s": config.duration_s,
        "warmup_s": config.warmup_s,
        "rounds": config.rounds,
        "connections": config.connections,
        "wrk_threads": config.threads,
        "aggregation": "median over rounds; errors summed; ratio = median rps / baseline's median rps",
    }


def write_json(path: Path, run: dict[str, Any], rows: Sequence[Row]) -> None:
    """Write this run's rows, each tagged with its ``run_id`` and ``git_sha``. Rows of suites this run did not
    measure stay, with their own run's header under ``runs`` (so ``--suite X`` refreshes X without dropping the
    others); a run no row refers to any more is dropped."""
    suites = run["config"]["suites"]
    fresh = [{"run_id": run["run_id"], "git_sha": run["git_sha"], **_row_json(r)} for r in rows]
    previous = upgrade(_load(path))
    kept = [r for r in previous["results"] if r.get("suite") not in suites]
    runs = {rid: header for rid, header in previous["runs"].items() if any(r["run_id"] == rid for r in kept)}
    runs[run["run_id"]] = run
    document = {
        "format": FORMAT,
        "latest_run": run["run_id"],
        "runs": dict(sorted(runs.items())),
        "results": kept + fresh,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


FORMAT = 2  # 1 (no "format" key): one machine/config header, "runs" keyed by suite, rows without run ids


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("results"), list) else None


def upgrade(previous: dict[str, Any] | None) -> dict[str, Any]:
    """A results document in the current format. Format 1 rows get the run of their suite (one legacy run per
    distinct run date) and ``git_sha: "unknown"``: that format never recorded the commit."""
    if previous is None:
        return {"runs": {}, "results": []}
    if previous.get("format") == FORMAT:
        return previous
    by_suite = previous.get("runs") or {
        suite: {"machine": previous.get("machine"), "config": previous.get("config")}
        for suite in (previous.get("config") or {}).get("suites", [])}
    runs: dict[str, dict[str, Any]] = {}
    suite_run: dict[str, str] = {}
    for suite, header in by_suite.items():
        date = str((header.get("machine") or {}).get("date", "")).replace("-", "").replace(":", "")
        run_id = f"{date[:15]}Z-legacy" if date else "legacy"
        runs.setdefault(run_id, {"run_id": run_id, "git_sha": UNKNOWN, "git_dirty": None, **header})
        suite_run[suite] = run_id
    results = []
    for row in previous["results"]:
        run_id = row.get("run_id") or suite_run.get(row.get("suite"), "legacy")
        runs.setdefault(run_id, {"run_id": run_id, "git_sha": UNKNOWN, "git_dirty": None})
        results.append({"run_id": run_id, "git_sha": row.get("git_sha", UNKNOWN),
                        **{k: v for k, v in row.items() if k not in ("run_id", "git_sha")}})
    return {"runs": runs, "results": results}
