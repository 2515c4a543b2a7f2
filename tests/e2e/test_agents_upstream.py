"""Agents completions on a model routed upstream: the agent's chat request goes to the peer (native and OpenAI-kind
upstreams, JSON and SSE), and the front meters it as an agents completion with the upstream's tokens."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.services.container import Services
from support import peer_upstreams, serving

pytestmark = pytest.mark.e2e

CHAT = ["completion_chat"]


@dataclass
class Front:
    url: str
    token: str
    services: Services

    def post(self, path: str, body: dict[str, object]) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)


@pytest.fixture
def front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Front]:
    peer_settings = Settings(data_dir=tmp_path / "peer", bootstrap_dev_token=False, models=[
        ModelEntry(id="fake-chat", engine="fake", capabilities=CHAT)])
    with serving(peer_settings, "front") as (peer_server, _peer, peer_token):
        monkeypatch.setenv("PEER_KEY", peer_token)
        upstreams, native, openai = peer_upstreams(peer_server.base_url, "fake-chat")
        settings = Settings(data_dir=tmp_path / "front", bootstrap_dev_token=False, upstreams=upstreams, models=[
            ModelEntry(id="remote-chat", capabilities=CHAT, routes=[native]),
            ModelEntry(id="oa-chat", capabilities=CHAT, routes=[openai])])
        with serving(settings, "user") as (server, services, token):
            yield Front(server.base_url, token, services)


@pytest.mark.parametrize("model", ["remote-chat", "oa-chat"])
def test_an_agent_on_an_upstream_model(front: Front, model: str) -> None:
    r = front.post("/v1/agents", {"model": model, "name": "remote", "instructions": "Be brief.",
                                  "completion_args": {"max_tokens": 3}})
    assert r.status_code == 200, r.text
    body = {"agent_id": r.json()["id"], "messages": [{"role": "user", "content": "hi"}]}
    r = front.post("/v1/agents/completions", body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "chat.completion" and 0 < out["usage"]["completion_tokens"] <= 3
    assert out["usage"]["prompt_tokens"] > 2  # the instructions went along
    r = front.post("/v1/agents/completions", {**body, "stream": True, "max_tokens": 2})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.text
    assert r.text.rstrip().endswith("data: [DONE]") and '"chat.completion.chunk"' in r.text
    front.services.usage.flush()
    records, _ = front.services.usage.list()
    rows = sorted((r.operation, r.model, r.status, r.completion_tokens) for r in records
                  if r.operation == "create_agent_completion")
    assert rows == sorted([("create_agent_completion", model, 200, out["usage"]["completion_tokens"]),
                           ("create_agent_completion", model, 200, 2)]), rows
