"""Suite "models": ``GET /v1/models`` (Bearer) and ``GET /mistralai/v1/models?api_token=`` on the gateway, each
against a bare Starlette endpoint serving the very bytes the gateway returns (the baseline).

Targets (from the issue): gateway throughput >= 0.5x the bare endpoint's, and p99 <= 50 ms, at 32 connections.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from core import BenchConfig, Check, Row, Target, max_p99, measure, min_ratio, summarise
from servers import Server, ServerError, fetch, free_port, launched

__all__ = ["MAX_P99_MS", "MIN_RATIO", "run"]

SUITE = "models"
MIN_RATIO = 0.5
MAX_P99_MS = 50.0
BENCH_DIR = Path(__file__).resolve().parent.parent
NATIVE_PATH = "/v1/models"
LOWCODE_PATH = "/mistralai/v1/models"


def _gateway_command() -> str:
    local = Path(sys.executable).parent / "mistral-gateway"  # the project's venv, not whatever is on PATH
    found = str(local) if local.exists() else shutil.which("mistral-gateway")
    if found is None:
        raise ServerError("mistral-gateway is not installed in this Python environment (run `make install`)")
    return found


def _gateway_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISTRAL_GATEWAY_")}  # no stray config
    env["MISTRAL_GATEWAY_LOG_LEVEL"] = "warning"
    return env


def _create_token(gateway: str, data_dir: Path, env: dict[str, str]) -> str:
    proc = subprocess.run([gateway, "tokens", "create", "--name", "bench", "--data-dir", str(data_dir)],
                          capture_output=True, text=True, env=env, check=False, timeout=120)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise ServerError(f"`mistral-gateway tokens create` failed ({proc.returncode}): {proc.stderr.strip()}")
    return lines[-1].strip()


def _fetch_ok(server: Server, path: str, headers: dict[str, str] | None = None) -> bytes:
    status, body = fetch(server.base_url + path, headers)
    if status != 200:
        raise ServerError(f"{server.name} answered GET {path.split('?')[0]} with {status}: {body[:300]!r}")
    return body


def _checks(row: Row) -> list[Check]:
    if row.baseline is None:
        return []
    return [min_ratio(row, MIN_RATIO), max_p99(row, MAX_P99_MS)]


def run(config: BenchConfig) -> list[Row]:
    gateway = _gateway_command()
    env = _gateway_env()
    data_dir = config.workdir / "gateway-data"
    token = _create_token(gateway, data_dir, env)
    bearer = {"Authorization": f"Bearer {token}"}
    lowcode_query = f"{LOWCODE_PATH}?api_token={token}"

    with ExitStack() as stack:
        port = free_port()
        gw = stack.enter_context(launched(
            "gateway", [gateway, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)],
            port=port, env=env, log_path=config.workdir / "gateway.log"))
        native_body = _fetch_ok(gw, NATIVE_PATH, bearer)
        lowcode_body = _fetch_ok(gw, lowcode_query)
        native_file, lowcode_file = config.workdir / "native.json", config.workdir / "lowcode.json"
        native_file.write_bytes(native_body)
        lowcode_file.write_bytes(lowcode_body)

        port = free_port()
        bare = stack.enter_context(launched(
            "bare", [sys.executable, str(BENCH_DIR / "bare_app.py"), "--port", str(port),
                     "--route", f"{NATIVE_PATH}={native_file}", "--route", f"{LOWCODE_PATH}={lowcode_file}"],
            port=port, env=env, log_path=config.workdir / "bare.log"))
        if _fetch_ok(bare, NATIVE_PATH) != native_body or _fetch_ok(bare, LOWCODE_PATH) != lowcode_body:
            raise ServerError("the bare app does not serve the gateway's bytes")
        print(f"  gateway {gw.base_url} (pid {gw.proc.pid}), bare {bare.base_url} (pid {bare.proc.pid}); "
              f"/v1/models body {len(native_body)} bytes", file=sys.stderr, flush=True)

        targets = [
            Target("bare GET /v1/models", bare, NATIVE_PATH, NATIVE_PATH),
            Target("gateway GET /v1/models (Bearer)", gw, NATIVE_PATH, NATIVE_PATH, headers=bearer,
                   baseline="bare GET /v1/models"),
            Target("bare GET /mistralai/v1/models", bare, LOWCODE_PATH, LOWCODE_PATH),
            Target("gateway GET /mistralai/v1/models (api_token)", gw, lowcode_query,
                   f"{LOWCODE_PATH}?api_token=***", baseline="bare GET /mistralai/v1/models"),
        ]
        samples = measure(targets, config)
    return summarise(SUITE, targets, samples, _checks)
