"""``serve --workers 2`` for real: two uvicorn worker processes on one port, told apart by the ``pid`` of their
JSON log lines (the PID is in no response). Both serve; a per-token RPM budget holds across them (the database
holds the counters); both record usage; a scrape from either sums both; one runs the embedded job workers; SIGTERM
to the parent stops every process. Runs on SQLite and, when configured, on PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.tables import UsageRow
from support import CLI, clean_env, free_port, stop_process

pytestmark = pytest.mark.e2e
TESTS = Path(__file__).resolve().parents[1]
BOUND = 60.0  # seconds a wait may take before the test calls it a hang (not a timing assertion)
RPM = 20


def env() -> dict[str, str]:
    base = clean_env() | {"PYTHONUNBUFFERED": "1"}
    base.pop("PROMETHEUS_MULTIPROC_DIR", None)  # serve makes its own
    return base | {"PYTHONPATH": os.pathsep.join(p for p in (base.get("PYTHONPATH"), str(TESTS)) if p)}


def new_token(config: Path, *extra: str) -> str:
    proc = subprocess.run([*CLI, "tokens", "create", "--name", "t", "--config", str(config), *extra],
                          capture_output=True, text=True, env=env(), timeout=60, check=True)
    return proc.stdout.strip().splitlines()[-1]


def access_lines(log: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [e for e in lines if e["logger"] == "mistral_gateway.access"]


def get(base: str, token: str) -> tuple[int, str]:
    """One request on a fresh connection (the kernel hands each new connection to whichever process accepts)."""
    r = httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return r.status_code, r.headers["x-request-id"]


def burst(base: str, token: str, count: int) -> list[tuple[int, str]]:
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda _: get(base, token), range(count)))


def pids_of(log: Path, request_ids: set[str]) -> set[int]:
    return {e["pid"] for e in access_lines(log) if e.get("request_id") in request_ids}


def wait_for_lines(log: Path, request_ids: set[str]) -> None:
    """Access lines are written as responses finish: wait (bounded) until every request's line is there."""
    deadline = time.monotonic() + BOUND
    while {e.get("request_id") for e in access_lines(log)} < request_ids:
        assert time.monotonic() < deadline, "access lines missing"
        time.sleep(0.05)


def test_two_worker_processes_share_limits_usage_and_metrics(tmp_path: Path, database_url: str) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
data_dir = "{tmp_path / 'data'}"
database_url = "{database_url}"
bootstrap_dev_token = false
log_format = "json"
usage_flush_seconds = 0.2
max_header_bytes = 16384
limits_clock = "clocks:pinned_in_a_minute"
""")
    free, limited = new_token(config), new_token(config, "--rpm", str(RPM))
    port, log = free_port(), tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        server = subprocess.Popen([*CLI, "serve", "--workers", "2", "--port", str(port), "--config", str(config)],
                                  stdout=out, stderr=out, env=env())
    try:
        deadline = time.monotonic() + BOUND
        while True:
            assert server.poll() is None, f"serve exited early:\n{log.read_text()}"
            assert time.monotonic() < deadline, "serve never answered"
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)

        # Both processes serve: requests on fresh connections until two PIDs have answered (bounded).
        served: list[tuple[int, str]] = []
        while len(pids_of(log, {rid for _, rid in served})) < 2:
            assert len(served) < 2000, "one process answered every request"
            served += burst(base, free, 8)
            wait_for_lines(log, {rid for _, rid in served})
        assert {status for status, _ in served} == {200}
        workers = pids_of(log, {rid for _, rid in served})
        assert len(workers) == 2 and server.pid not in workers

        # One RPM budget across both: until both processes have answered the limited token, at least 2 x RPM.
        limited_calls: list[tuple[int, str]] = []
        while len(limited_calls) < 2 * RPM or len(pids_of(log, {rid for _, rid in limited_calls})) < 2:
            assert len(limited_calls) < 2000, "one process answered every limited request"
            limited_calls += burst(base, limited, 8)
            wait_for_lines(log, {rid for _, rid in limited_calls})
        statuses = [status for status, _ in limited_calls]
        # Separate budgets would admit up to RPM in each process that answered (more than RPM in all).
        assert statuses.count(200) == RPM and statuses.count(429) == len(statuses) - RPM

        # A scrape from whichever process answers counts both processes' requests.
        scrape = httpx.get(base + "/metrics", timeout=30).text
        counted = sum(float(m.group(1)) for m in re.finditer(
            r'^mistral_gateway_requests_total\{[^}]*operation="list_available_models"[^}]*\} (\S+)$', scrape, re.M))
        assert counted == len(served) + len(limited_calls)

        # The worker processes keep serve's HTTP limits: 20 KB of headers is under the default 32 KiB, over the 16.
        assert httpx.get(base + "/health", headers={"X-Big": "a" * 20_000}, timeout=30).status_code == 431

        # Exactly one process runs the embedded job workers.
        runners = [json.loads(line)["pid"] for line in log.read_text().splitlines()
                   if line.startswith("{") and "job runner" in json.loads(line)["message"]]
        assert len(runners) == 1 and runners[0] in workers

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=BOUND) == 0
    finally:
        stop_process(server)
    deadline = time.monotonic() + BOUND
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.monotonic() < deadline, "a worker process outlived the server"
        time.sleep(0.05)

    # Usage from both processes is in the shared database: a row per request (refusals included).
    db = Database(database_url)
    try:
        with db.session() as session:
            rows = session.execute(select(UsageRow.status, func.count()).group_by(UsageRow.status)).all()
    finally:
        db.dispose()
    assert dict(rows) == {200: len(served) + RPM, 429: len(limited_calls) - RPM}
