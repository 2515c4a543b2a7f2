"""Issue 9 regressions over HTTP, both dialects: JSON booleans are strict, file purposes are checked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.http.app import create_app
from mistral_gateway.services.container import build_services

BODY = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    settings = Settings(data_dir=tmp_path / "data", bootstrap_dev_token=False,
                        models=[ModelEntry(id="fake-chat", engine="fake", capabilities=["completion_chat"])])
    services = build_services(settings)
    token, _ = services.tokens.create("t")
    with TestClient(create_app(services=services)) as client:
        yield client, token
    services.close()


def send(client: TestClient, token: str, method: str, path: str, lowcode: bool, **kw: Any) -> Any:
    if lowcode:
        return client.request(method, "/mistralai" + path, params={"api_token": token, **kw.pop("params", {})}, **kw)
    return client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)


@pytest.mark.parametrize("lowcode", [False, True])
@pytest.mark.parametrize("value", [0, 1, "true"])
def test_json_booleans_must_be_booleans(env: tuple[TestClient, str], lowcode: bool, value: Any) -> None:
    client, token = env
    r = send(client, token, "POST", "/v1/chat/completions", lowcode, json={**BODY, "safe_prompt": value})
    assert r.status_code == 422
    detail = r.json()["data"]["error"]["detail"] if lowcode else r.json()["detail"]
    assert detail[0]["loc"] == ["body", "safe_prompt"] and detail[0]["type"] == "bool_type"
    assert send(client, token, "POST", "/v1/chat/completions", lowcode,
                json={**BODY, "safe_prompt": True}).status_code == 200


@pytest.mark.parametrize("lowcode", [False, True])
def test_file_purpose_must_be_a_known_one(env: tuple[TestClient, str], lowcode: bool) -> None:
    client, token = env
    r = send(client, token, "GET", "/v1/files", lowcode, params={"purpose": "true"})
    assert r.status_code == 422
    assert send(client, token, "GET", "/v1/files", lowcode, params={"purpose": "batch"}).status_code == 200
    assert send(client, token, "GET", "/v1/files", lowcode, params={"include_total": "false"}).status_code == 200
    up = send(client, token, "POST", "/v1/files", lowcode, files={"file": ("a.jsonl", b"{}\n")},
              data={"purpose": "true"})
    assert up.status_code == 400
