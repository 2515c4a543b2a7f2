"""Benchmark entry point: run the suites, print a table, write ``bench/results.json``.

    .venv/bin/python bench/run.py                       # every suite, 2 rounds x 10 s per target
    .venv/bin/python bench/run.py --suite models --duration 5 --rounds 1

Exit status: 0 even when a performance target is missed (this is a report), 1 if any request failed,
2 if a server could not be started or set up, or wrk is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from core import BenchConfig, Row
from machine import machine_info
from provenance import run_header
from report import config_json, format_table, write_json
from servers import ServerError
from suites import SUITES
from wrk import WrkError, wrk_version

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", action="append", choices=sorted(SUITES), dest="suites",
                        help="run only this suite (repeatable; default: all)")
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per target and round (10)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds before each measurement (2)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the median is reported (2)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1: leaves a core for the server)")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results.json", help="JSON results file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if min(args.duration, args.rounds, args.connections, args.threads) < 1 or args.warmup < 0:
        _parser().error("--duration, --rounds, --connections and --threads must be >= 1, --warmup >= 0")
    names = args.suites or list(SUITES)
    try:
        machine = machine_info(wrk_version())
    except WrkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{machine['cpu_model']}, {machine['cores']} cores, Python {machine['python']}, "
          f"load {machine['load_average']}, {machine['wrk']}", file=sys.stderr)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="mistral-gateway-bench-") as tmp:
        base = BenchConfig(workdir=Path(tmp), duration_s=args.duration, warmup_s=args.warmup, rounds=args.rounds,
                           connections=args.connections, threads=args.threads)
        run = run_header(REPO_DIR, machine, config_json(base, names))  # the git state the run starts from
        for name in names:
            config = dataclasses.replace(base, workdir=base.workdir / name)
            config.workdir.mkdir(parents=True)
            print(f"suite {name}: {config.rounds} round(s) x {config.duration_s} s per target "
                  f"(+{config.warmup_s} s warm-up), {config.connections} connections", file=sys.stderr, flush=True)
            try:
                rows += SUITES[name](config)
            except (ServerError, WrkError) as err:
                print(f"error in suite {name}: {err}", file=sys.stderr)
                return 2
    write_json(args.output, run, rows)
    print(format_table(rows))
    dirty = " (with uncommitted changes)" if run["git_dirty"] else ""
    print(f"\nwritten {args.output}: run {run['run_id']} at {run['git_sha']}{dirty}")
    failed = [r.scenario for r in rows if r.errors]
    if failed:
        print(f"error: requests failed in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
