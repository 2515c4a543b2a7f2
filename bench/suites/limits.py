"""Suite "limits": what one rate-limit check costs (``admit`` + ``settle`` of a limited principal's request) with the
SQLite, PostgreSQL and Redis limiters, side by side in one run, against a principal without limits (the baseline:
no store is asked at all).

Each measurement is ``bench/limits_direct.py`` in its own process: N threads (1, then ``THREADS``) in a closed loop
for ``--warmup`` + ``--duration`` seconds; the row shows checks per second (all threads) and the median and p99 time
of one check (admit + settle), as medians over ``--rounds`` interleaved rounds in alternating order. The suite starts
its servers itself on loopback and stops them however it ends: ``redis-server`` (no persistence) and a throwaway
PostgreSQL cluster (``scripts/pg_test_cluster.sh``); a store whose server cannot start is left out with a note.
No target: the figures are for choosing a store (README "Scale-out").
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from core import BenchConfig, Row, Sample
from servers import ServerError, free_port

from .embeddings import _json_process, _log

__all__ = ["THREADS", "run"]

SUITE = "limits"
THREADS = (1, 4)
STORES = ("none", "sqlite", "postgresql", "redis")
NAMES = {"none": "no limits (baseline)", "sqlite": "SQLite limiter", "postgresql": "PostgreSQL limiter",
         "redis": "Redis limiter"}
BENCH_DIR = Path(__file__).resolve().parent.parent
REPO = BENCH_DIR.parent


@contextmanager
def _redis(workdir: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = _redis_client(f"redis://127.0.0.1:{port}/0")
        deadline = time.monotonic() + 30
        while True:  # a readiness wait, bounded
            try:
                client.ping()
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise ServerError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


@contextmanager
def _postgres() -> Iterator[str]:
    script = str(REPO / "scripts" / "pg_test_cluster.sh")
    started = subprocess.run([script, "start"], capture_output=True, text=True, timeout=300, check=False)
    if started.returncode != 0:
        raise ServerError(f"PostgreSQL did not start: {started.stderr.strip()[-500:]}")
    exports = dict(line.removeprefix("export ").split("=", 1) for line in started.stdout.splitlines()
                   if line.startswith("export "))
    try:
        yield _migrated(exports["MISTRAL_GATEWAY_TEST_POSTGRES_URL"])
    finally:
        subprocess.run([script, "stop", exports["MISTRAL_GATEWAY_TEST_POSTGRES_DIR"]], capture_output=True,
                       timeout=120, check=False)


def _migrated(url: str) -> str:
    from mistral_gateway.storage.db import Database

    db = Database(url)
    db.migrate()
    db.dispose()
    return url


def _measure(store: str, url: str, threads: int, config: BenchConfig) -> dict[str, Any]:
    return _json_process([sys.executable, str(BENCH_DIR / "limits_direct.py"), "--store", store, "--url", url,
                          "--threads", str(threads), "--duration", str(config.duration_s), "--warmup",
                          str(config.warmup_s)], timeout_s=120 + config.duration_s + config.warmup_s)


def _row(store: str, threads: int, runs: list[dict[str, Any]]) -> Row:
    p50_us = statistics.median(r["p50_us"] for r in runs)
    p99_us = statistics.median(r["p99_us"] for r in runs)
    samples = [Sample(rps=r["checks_per_s"], p50_ms=r["p50_us"] / 1e3, p99_ms=r["p99_us"] / 1e3, errors=0,
                      requests=r["checks"], duration_s=r["checks"] / r["checks_per_s"], server_cpu_s=r["cpu_s"])
               for r in runs]
    row = Row(suite=SUITE, scenario=f"{NAMES[store]}, {threads} thread(s)", url="in-process, admit + settle",
              rps=statistics.median(r["checks_per_s"] for r in runs), p50_ms=p50_us / 1e3, p99_ms=p99_us / 1e3,
              errors=0, cpu_us_per_request=None, server_cpu_percent=None, samples=samples,
              baseline=None if store == "none" else f"{NAMES['none']}, {threads} thread(s)", unit="checks/s")
    row.notes.append(f"info: one check p50 {p50_us:.1f} us, p99 {p99_us:.1f} us")
    return row


def rows_of(results: dict[tuple[str, int], list[dict[str, Any]]]) -> list[Row]:
    """The table: a row per (store, threads) measured, each with its ratio to the baseline of as many threads."""
    rows = {key: _row(*key, runs) for key, runs in results.items() if runs}
    for (store, threads), row in rows.items():
        base = rows.get(("none", threads))
        if store != "none" and base is not None and base.rps and row.rps is not None:
            row.ratio = row.rps / base.rps
            row.notes.append(f"info: {1e3 * (row.p50_ms - base.p50_ms):.1f} us more per request than no limits "
                             "(p50)")
    return list(rows.values())


def run(config: BenchConfig) -> list[Row]:
    urls: dict[str, str] = {"none": ""}
    notes: list[str] = []
    with ExitStack() as stack:
        urls["sqlite"] = _migrated(f"sqlite:///{config.workdir / 'limits.db'}")
        for store, server in (("postgresql", _postgres), ("redis", lambda: _redis(config.workdir))):
            try:
                urls[store] = stack.enter_context(server())
            except ServerError as exc:
                notes.append(f"info: {NAMES[store]} left out: {exc}")
                _log(f"  {NAMES[store]} left out: {exc}")
        stores = [s for s in STORES if s in urls]
        results: dict[tuple[str, int], list[dict[str, Any]]] = {(s, t): [] for s in stores for t in THREADS}
        for round_no in range(config.rounds):
            order = [(s, t) for t in THREADS for s in stores]
            for store, threads in order if round_no % 2 == 0 else list(reversed(order)):
                report = _measure(store, urls[store], threads, config)
                results[(store, threads)].append(report)
                _log(f"  round {round_no + 1}/{config.rounds}  {NAMES[store]:<22} {threads} thread(s)  "
                     f"{report['checks_per_s']:>9.0f}/s  p50 {report['p50_us']:8.1f} us  "
                     f"p99 {report['p99_us']:8.1f} us")
    rows = rows_of(results)
    if rows:
        rows[0].notes += notes
    return rows
