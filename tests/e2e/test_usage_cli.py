"""``mistral-gateway usage`` and token limits end to end: a real ``serve`` process configured by TOML, real HTTP,
usage written at shutdown, then read back by the CLI from the database. The server's rate limiter runs on a clock
pinned inside one minute (``limits_clock``), so the per-minute counts hold whenever the test runs, without waiting
for a fresh minute."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from clocks import PINNED
from support import CLI, clean_env, free_port

pytestmark = pytest.mark.e2e
TESTS = Path(__file__).resolve().parents[1]

CONFIG = """
usage_flush_seconds = 3600   # nothing is written while serving: only the flush at shutdown
limits_clock = "clocks:pinned_in_a_minute"

[default_token_limits]
requests_per_minute = 1000

[[workspaces]]
name = "team"
requests_per_minute = 2
"""


def env() -> dict[str, str]:
    """Every command reads the config, so each imports the pinned clock from tests/ (and the code under test from
    the caller's PYTHONPATH)."""
    base = clean_env() | {"PYTHONUNBUFFERED": "1"}
    return base | {"PYTHONPATH": os.pathsep.join(p for p in (base.get("PYTHONPATH"), str(TESTS)) if p)}


def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env(), timeout=60, check=False)
    if ok:
        assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def serve(data_dir: Path, config: Path, port: int, log: Path) -> tuple[subprocess.Popen[Any], str]:
    """Start ``serve`` and return it with the dev token it prints."""
    with open(log, "w") as out:
        server = subprocess.Popen([*CLI, "serve", "--port", str(port), "--data-dir", str(data_dir),
                                   "--config", str(config)], stdout=out, stderr=subprocess.STDOUT, env=env())
    deadline = time.monotonic() + 30
    while True:
        assert server.poll() is None, f"serve exited early:\n{log.read_text()}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"serve did not come up:\n{log.read_text()}"
        time.sleep(0.1)
    tokens = re.findall(r"^\s*(at_[A-Za-z0-9_-]{32,})\s*$", log.read_text(), re.MULTILINE)
    assert tokens, log.read_text()
    return server, tokens[0]


def test_limits_and_usage_through_a_real_server(tmp_path: Path) -> None:
    data_dir, config, port = tmp_path / "data", tmp_path / "gateway.toml", free_port()
    config.write_text(CONFIG)
    where = ("--data-dir", str(data_dir), "--config", str(config))
    server, dev = serve(data_dir, config, port, tmp_path / "serve.out")
    try:
        out = cli("tokens", "create", "--name", "team-ci", "--workspace", "team", "--rpm", "5", "--tpm", "9000",
                  "--concurrency", "2", *where).stdout
        assert "limits rpm 5, tpm 9000, concurrency 2" in out.splitlines()[0]
        team = out.strip().splitlines()[-1]
        rows = {r["name"]: r for r in json.loads(cli("tokens", "list", "--json", *where).stdout)}
        assert {k: rows["team-ci"][k] for k in ("requests_per_minute", "tokens_per_minute",
                                                "concurrent_requests")} == {
            "requests_per_minute": 5, "tokens_per_minute": 9000, "concurrent_requests": 2}
        assert rows["dev"]["requests_per_minute"] is None  # the configured default applies to it

        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            assert http.get("/v1/models", headers={"Authorization": f"Bearer {dev}"}).status_code == 200
            assert http.get("/mistralai/v1/models", params={"api_token": dev}).status_code == 200
            statuses = [http.get("/v1/models", headers={"Authorization": f"Bearer {team}"}).status_code
                        for _ in range(3)]
            assert statuses == [200, 200, 429]  # the workspace allows 2 per minute, though the token allows 5
            limited = http.get("/mistralai/v1/models", params={"api_token": team})
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) == 60 - PINNED % 60 == 50
            assert "workspace 'team'" in limited.json()["data"]["error"]["message"]
            admin = http.get("/admin/usage", params={"by": "workspace"}, headers={"Authorization": f"Bearer {dev}"})
            assert {r["key"]: r["requests"] for r in admin.json()["data"]} == {"default": 2, "team": 4}
            # queued only: written by the flush at shutdown
            assert http.get("/v1/models/ministral-3b-latest", headers={"Authorization": f"Bearer {dev}"}).is_success
    finally:
        server.terminate()  # a clean shutdown writes the queued usage records
        server.wait(timeout=30)

    by_workspace = json.loads(cli("usage", "--by", "workspace", "--json", *where).stdout)
    assert {r["key"]: (r["requests"], r["errors"]) for r in by_workspace} == {"default": (3, 0), "team": (4, 2)}
    records = json.loads(cli("usage", "--json", *where).stdout)
    assert len(records) == 7
    assert [(r["operation"], r["model"], r["status"], r["dialect"]) for r in records[:3]] == [
        ("retrieve_model", "ministral-3b-latest", 200, "native"),
        ("list_available_models", None, 429, "lowcode"), ("list_available_models", None, 429, "native")]
    table = cli("usage", "--by", "operation", *where).stdout.splitlines()
    assert table[0].split()[:3] == ["OPERATION", "REQUESTS", "ERRORS"]
    assert table[1].split()[:3] == ["list_available_models", "6", "2"]
    assert table[2].split()[:3] == ["retrieve_model", "1", "0"]
    listing = cli("usage", "--limit", "4", *where).stdout.splitlines()
    assert len(listing) == 1 + 4 + 1 and listing[-1] == "4 of 7 record(s)"
    assert json.loads(cli("usage", "--since", "2999-01-01", "--json", *where).stdout) == []
    assert len(json.loads(cli("usage", "--since", "1h", "--by", "token", "--json", *where).stdout)) == 2
    bad = cli("usage", "--since", "last week", *where, ok=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
