"""A conversation whose model is routed to upstreams on loopback (a second mistral-gateway on the fake engine, as
a native and as an OpenAI-compatible upstream): each turn's chat completion goes through the route, whole or
streamed, and the conversation is stored here. No mock servers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mistral_gateway.config import ModelEntry, Settings
from support import peer_upstreams, serving

pytestmark = pytest.mark.e2e

CAPS = ["completion_chat", "function_calling"]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}}


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    tmp = Path(tmp_path_factory.mktemp("conversations-upstream"))
    peer_settings = Settings(data_dir=tmp / "peer", bootstrap_dev_token=False, models=[
        ModelEntry(id="fake-chat", engine="fake", capabilities=CAPS)])
    with serving(peer_settings, "front") as (peer_server, _peer, peer_token), pytest.MonkeyPatch.context() as mp:
        mp.setenv("PEER_KEY", peer_token)
        upstreams, native, openai = peer_upstreams(peer_server.base_url, "fake-chat")
        settings = Settings(data_dir=tmp / "front", bootstrap_dev_token=False, upstreams=upstreams, models=[
            ModelEntry(id="remote-chat", capabilities=CAPS, routes=[native]),
            ModelEntry(id="oa-chat", capabilities=CAPS, routes=[openai])])
        with serving(settings, "user") as (front_server, _front, token):
            yield front_server.base_url, token


def post(front: tuple[str, str], path: str, body: dict[str, Any]) -> httpx.Response:
    url, token = front
    return httpx.post(url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.mark.parametrize("model", ["remote-chat", "oa-chat"])
def test_turns_through_an_upstream(front: tuple[str, str], model: str) -> None:
    r = post(front, "/v1/conversations", {"model": model, "inputs": "weather in Paris?", "tools": [WEATHER],
                                          "completion_args": {"tool_choice": "any", "max_tokens": 32}})
    assert r.status_code == 200, r.text
    out = r.json()
    call = out["outputs"][-1]
    assert call["type"] == "function.call" and call["name"] == "get_weather" and json.loads(call["arguments"])
    assert out["usage"]["total_tokens"] > 0
    result = {"type": "function.result", "tool_call_id": call["tool_call_id"], "result": "sunny"}
    r = post(front, f"/v1/conversations/{out['conversation_id']}", {
        "inputs": [result], "stream": True, "completion_args": {"tool_choice": "none", "max_tokens": 8}})
    assert r.status_code == 200, r.text
    events = [line[7:] for line in r.text.split("\n") if line.startswith("event: ")]
    assert events[0] == "conversation.response.started" and events[-1] == "conversation.response.done"
    assert "message.output.delta" in events
    url, token = front
    history = httpx.get(f"{url}/v1/conversations/{out['conversation_id']}/history",
                        headers={"Authorization": f"Bearer {token}"}).json()
    assert [e["type"] for e in history["entries"]] == ["message.input", "function.call", "function.result",
                                                       "message.output"]
