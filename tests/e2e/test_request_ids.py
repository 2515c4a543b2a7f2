"""Request ids on a real server: every response carries ``x-request-id`` (both dialects, errors, streams, the
routes outside the dialects), a plain client id is echoed; a ``serve`` process logging JSON (and text) writes the
ids on its lines and no token in any form, whether sent as a Bearer header or as ``?api_token=``."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from support import CLI, clean_env, fake_settings, free_port, serving, stop_process

pytestmark = pytest.mark.e2e
GENERATED = re.compile(r"[0-9a-f]{16}")
CHAT = {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def test_every_response_has_a_request_id(tmp_path: Path) -> None:
    with serving(fake_settings(tmp_path / "data")) as (live, _, token), \
            httpx.Client(base_url=live.base_url, timeout=60) as http:
        auth = {"Authorization": f"Bearer {token}"}
        responses = {
            "native": http.get("/v1/models", headers=auth),
            "native error": http.get("/v1/models"),
            "native not found": http.get("/v1/files/nope", headers=auth),
            "lowcode": http.get("/mistralai/v1/models", params={"api_token": token}),
            "lowcode error": http.get("/mistralai/v1/models", params={"api_token": "at_wrong"}),
            "health": http.get("/health"),
            "ready": http.get("/ready"),
            "metrics": http.get("/metrics"),
            "unknown path": http.get("/nowhere"),
        }
        with http.stream("POST", "/v1/chat/completions", headers=auth, json=CHAT | {"stream": True}) as stream:
            responses["native stream"] = stream
            body = stream.read()
        assert b"data: [DONE]" in body
        with http.stream("POST", "/mistralai/v1/chat/completions", params={"api_token": token},
                         json=CHAT | {"stream": True}) as stream:
            responses["lowcode stream"] = stream
            stream.read()
        assert [name for name, r in responses.items() if not GENERATED.fullmatch(r.headers.get("x-request-id", ""))
                ] == []
        assert responses["native error"].status_code == 401 and responses["lowcode stream"].status_code == 200
        assert len({r.headers["x-request-id"] for r in responses.values()}) == len(responses)  # one each
        echoed = http.get("/v1/models", headers=auth | {"X-Request-ID": "trace-42.a:b"})
        assert echoed.headers["x-request-id"] == "trace-42.a:b"
        refused = http.get("/v1/models", headers=auth | {"X-Request-ID": token})  # token-shaped: not echoed
        assert GENERATED.fullmatch(refused.headers["x-request-id"])


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_serve_process_logs_request_ids_and_no_token(tmp_path: Path, log_format: str) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\nbootstrap_dev_token = false\nlog_format = "{log_format}"\n')
    created = subprocess.run([*CLI, "tokens", "create", "--name", "t", "--config", str(config)], capture_output=True,
                             text=True, env=clean_env(), timeout=60, check=True)
    token = created.stdout.strip().splitlines()[-1]
    port, log = free_port(), tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        server = subprocess.Popen([*CLI, "serve", "--port", str(port), "--config", str(config)], stdout=out,
                                  stderr=out, env=clean_env() | {"PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "serve never answered"
            try:
                httpx.get(base + "/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        ids = [
            httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=30),
            httpx.get(base + "/mistralai/v1/models", params={"api_token": token}, timeout=30),
            httpx.get(base + "/mistralai/v1/files/x", params={"api_token": token + "x"}, timeout=30),  # 401
            httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {token}", "X-Request-ID": "mine-1"},
                      timeout=30),
        ]
        server.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once it has shut down cleanly: -15 is a clean stop too
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        stop_process(server)
    text = log.read_text()
    assert token not in text and token[3:] not in text and token[3:23] not in text  # in no form
    expected = [r.headers["x-request-id"] for r in ids]
    assert expected[-1] == "mine-1"
    if log_format == "json":
        entries = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
        access = [e for e in entries if e["logger"] == "mistral_gateway.access" and "/health" not in e["path"]]
        assert [e["request_id"] for e in access] == expected
        assert [e["status"] for e in access] == [r.status_code for r in ids] == [200, 200, 401, 200]
        assert access[1]["path"] == "/mistralai/v1/models?api_token=***"
    else:
        access = [line for line in text.splitlines() if "mistral_gateway.access" in line and "/health" not in line]
        assert [line.rsplit(" request_id=", 1)[1] for line in access] == expected
        assert '"GET /mistralai/v1/models?api_token=***" 200' in access[1]
