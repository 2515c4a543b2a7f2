"""The ``mistral-gateway`` command line, run as a real subprocess against a temporary data directory."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mistral_gateway.config import Settings
from mistral_gateway.registry import Registry
from support import CLI, clean_env, free_port, stop_process

pytestmark = pytest.mark.e2e

TOKEN_LINE = re.compile(r"^at_[A-Za-z0-9_-]{32,}$")


def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, env=clean_env(), timeout=60, check=False)
    if ok:
        assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def create_token(data_dir: Path, *extra: str) -> tuple[str, str]:
    """(token id, token) from ``tokens create``; the token must be alone on the last line."""
    out = cli("tokens", "create", "--data-dir", str(data_dir), *extra).stdout
    lines = out.strip().splitlines()
    assert TOKEN_LINE.match(lines[-1]), out
    token_id = re.search(r"\btok_[0-9a-f]+\b", lines[0])
    assert token_id, out
    return token_id.group(0), lines[-1]


def test_tokens_create_list_revoke(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    token_id, token = create_token(data_dir, "--name", "x", "--scope", "files", "--expires-in", "3600")
    assert (data_dir / "gateway.db").exists()

    listing = cli("tokens", "list", "--data-dir", str(data_dir)).stdout
    assert token_id in listing and " x " in listing and "active" in listing and "files" in listing
    assert token not in listing
    assert token[:10] in listing  # the prefix only, to recognise it
    rows = json.loads(cli("--data-dir", str(data_dir), "tokens", "list", "--json").stdout)  # global flag works too
    assert [(r["id"], r["name"], r["scopes"], r["state"]) for r in rows] == [(token_id, "x", ["files"], "active")]
    assert rows[0]["expires_at"] - rows[0]["created_at"] == 3600
    assert token not in json.dumps(rows)

    assert cli("tokens", "revoke", token_id, "--data-dir", str(data_dir)).stdout.strip() == f"revoked {token_id}"
    rows = json.loads(cli("tokens", "list", "--json", "--data-dir", str(data_dir)).stdout)
    assert rows[0]["state"] == "revoked"


def test_cli_errors_are_clean(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    bad_scope = cli("tokens", "create", "--name", "x", "--scope", "bogus", "--data-dir", data_dir, ok=False)
    assert bad_scope.returncode == 2
    assert bad_scope.stderr.startswith("error:") and "bogus" in bad_scope.stderr
    assert "at_" not in bad_scope.stdout and "Traceback" not in bad_scope.stderr
    unknown = cli("tokens", "revoke", "tok_doesnotexist", "--data-dir", data_dir, ok=False)
    assert unknown.returncode == 2 and "tok_doesnotexist" in unknown.stderr


def test_openapi_documents() -> None:
    lowcode = json.loads(cli("openapi", "--dialect", "lowcode").stdout)
    assert lowcode["openapi"].startswith("3.1")
    assert {"/mistralai/v1/files", "/mistralai/v1/files/{file_id}", "/mistralai/v1/models"} <= set(lowcode["paths"])
    assert all(path.startswith("/mistralai/v1/") for path in lowcode["paths"])
    native = json.loads(cli("openapi").stdout)
    assert {"/v1/files", "/v1/files/{file_id}/content", "/v1/models/{model_id}"} <= set(native["paths"])
    assert native == json.loads((Path(__file__).resolve().parents[2] / "openapi" / "native.json").read_text())


def test_operations_listing() -> None:
    registry = Registry.load()
    proc = cli("operations")
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == len(registry) == 55 + len(registry.extras)  # stdout: exactly one line per operation
    for op, line in zip(registry, lines, strict=True):
        assert line.startswith(op.name) and op.path in line and f" {op.method} " in line
        assert line.rstrip().endswith("implemented" if op.implemented else "not yet")
    assert proc.stderr.strip() == (f"{sum(op.implemented for op in registry.seed)}/55 operations implemented, "
                                   f"and {len(registry.extras)} beyond them")
    as_json = json.loads(cli("operations", "--json").stdout)
    assert [entry["id"] for entry in as_json] == [op.id for op in registry]
    assert [entry["id"] for entry in as_json if entry["seed"]] == [op.id for op in registry.seed]


def test_cli_revoke_takes_effect_immediately_on_a_running_server(live_server: Any, settings: Settings) -> None:
    token_id, token = create_token(settings.data_dir, "--name", "cli", "--scope", "files")
    with httpx.Client(base_url=live_server.base_url) as http:
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(2):  # the second answer comes from the server's verified-token cache
            assert http.get("/v1/files", headers=headers).status_code == 200
        assert http.get("/v1/models", headers=headers).status_code == 403  # only the files scope
        cli("tokens", "revoke", token_id, "--data-dir", str(settings.data_dir))
        r = http.get("/v1/files", headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "TOKEN_REVOKED"
        r = http.get("/mistralai/v1/files", params={"api_token": token})
        assert r.status_code == 401


def test_serve(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.out"
    with open(log, "w") as out:
        server = subprocess.Popen([*CLI, "serve", "--port", str(port), "--data-dir", str(data_dir)],
                                  stdout=out, stderr=subprocess.STDOUT, env=clean_env() | {"PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, f"serve exited early:\n{log.read_text()}"
            try:
                if httpx.get(f"{base}/health", timeout=1).json() == {"status": "ok"}:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"serve did not come up:\n{log.read_text()}"
            time.sleep(0.1)

        output = log.read_text()
        tokens = re.findall(r"^\s*(at_[A-Za-z0-9_-]{32,})\s*$", output, re.MULTILINE)
        assert tokens, output
        token = tokens[0]
        curls = [line.strip() for line in output.splitlines() if line.strip().startswith("curl ")]
        assert len(curls) == 2, output
        assert f"{base}/v1/models" in curls[0] and f"Authorization: Bearer {token}" in curls[0]
        assert f"{base}/mistralai/v1/models?api_token={token}" in curls[1]

        dev_token_file = data_dir / "dev-token"
        assert dev_token_file.read_text().strip() == token
        assert stat.S_IMODE(dev_token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700  # owner-only data dir and database
        assert stat.S_IMODE((data_dir / "gateway.db").stat().st_mode) == 0o600

        with httpx.Client(base_url=base) as http:
            native = http.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
            lowcode = http.get("/mistralai/v1/models", params={"api_token": token})
            assert native.status_code == lowcode.status_code == 200
            assert lowcode.json() == {"data": native.json()}
            assert http.get("/v1/models").status_code == 401
            # Malformed parameter names (the server ignores them) and a token pasted into the path: none logged.
            for target in (f"/mistralai/v1/models?api_token%3D{token}", f"/mistralai/v1/models?api_token%20={token}",
                           f"/mistralai/v1/models?api_token+={token}", f"/mistralai/v1/models/{token}",
                           "/mistralai/v1/models?done=1"):
                assert http.get(target).status_code in (401, 404)
        deadline = time.monotonic() + 5  # the access log line is written just after the response
        while "done=1" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        access_log = log.read_text().replace(output, "")
        assert "/mistralai/v1/models?api_token=***" in access_log
        assert "/mistralai/v1/models/***" in access_log
        assert token not in access_log and token[3:20] not in access_log  # the access log never writes it
    finally:
        stop_process(server, 15)
