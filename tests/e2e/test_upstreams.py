"""Routing to real upstreams on loopback: a second mistral-gateway instance (native kind), the same instance's /v1
through the ``openai`` kind, a dead port for fallback, and a passthrough workspace. No mock servers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines import fake
from mistral_gateway.services.container import Services, build_services
from support import LiveServer, free_port

pytestmark = pytest.mark.e2e

CHAT = {"model": "remote-chat", "messages": [{"role": "user", "content": "hello there"}], "random_seed": 7}


def _peer_models() -> list[ModelEntry]:
    return [
        ModelEntry(id="fake-chat", engine="fake", capabilities=["completion_chat", "completion_fim"],
                   fim_template="<pre>{prompt}<suf>{suffix}<mid>"),
        ModelEntry(id="fake-embed", engine="fake", capabilities=[]),
    ]


class Pair:
    def __init__(self, peer: Services, peer_server: LiveServer, peer_token: str, front: Services,
                 front_server: LiveServer, token: str, cloud_token: str) -> None:
        self.peer, self.peer_server, self.peer_token = peer, peer_server, peer_token
        self.front, self.front_server = front, front_server
        self.token, self.cloud_token = token, cloud_token
        self.url = front_server.base_url

    def post(self, path: str, body: dict, token: str | None = None, **kw) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers={"Authorization": f"Bearer {token or self.token}"},
                          timeout=30, **kw)


@pytest.fixture
def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pair]:
    peer = build_services(Settings(data_dir=tmp_path / "peer", bootstrap_dev_token=False, models=_peer_models()))
    peer_token, _ = peer.tokens.create("front", scopes=["*"])
    peer_server = LiveServer(peer)
    peer_server.start()
    monkeypatch.setenv("PEER_KEY", peer_token)
    dead = f"http://127.0.0.1:{free_port()}"
    common = {"api_key_env": "PEER_KEY", "allow_private_network": True, "connect_timeout": 2}
    settings = Settings(
        data_dir=tmp_path / "front", bootstrap_dev_token=False,
        upstreams=[
            {"name": "peer", "kind": "mistral-gateway", "base_url": peer_server.base_url, **common},
            {"name": "peer-openai", "kind": "openai", "base_url": peer_server.base_url + "/v1", **common},
            {"name": "down", "kind": "mistral-gateway", "base_url": dead, **common},
        ],
        models=[
            ModelEntry(id="remote-chat", capabilities=["completion_chat", "completion_fim"],
                       routes=[{"upstream": "peer", "model": "fake-chat"}]),
            ModelEntry(id="remote-embed", capabilities=[], routes=[{"upstream": "peer", "model": "fake-embed"}]),
            ModelEntry(id="oa-chat", capabilities=["completion_chat", "completion_fim"],
                       routes=[{"upstream": "peer-openai", "model": "fake-chat"}]),
            ModelEntry(id="oa-embed", capabilities=[], routes=[{"upstream": "peer-openai", "model": "fake-embed"}]),
            ModelEntry(id="fallback-chat", capabilities=["completion_chat"],
                       routes=[{"upstream": "down", "model": "fake-chat"}, {"upstream": "peer", "model": "fake-chat"}]),
            ModelEntry(id="dead-chat", capabilities=["completion_chat"], routes=[{"upstream": "down"}]),
            ModelEntry(id="local-chat", engine="fake", capabilities=["completion_chat"]),
            ModelEntry(id="or-local", capabilities=["completion_chat"],
                       routes=[{"upstream": "down"}, {"upstream": "local", "model": "local-chat"}]),
        ],
        workspaces=[{"name": "cloud", "passthrough": "peer"}],
    )
    front = build_services(settings)
    token, _ = front.tokens.create("user", scopes=["*"])
    cloud_token, _ = front.tokens.create("cloud-user", workspace="cloud", scopes=["*"])
    front_server = LiveServer(front)
    front_server.start()
    yield Pair(peer, peer_server, peer_token, front, front_server, token, cloud_token)
    front_server.stop()
    peer_server.stop()
    front.close()
    peer.close()


def _direct(pair: Pair, path: str, body: dict) -> httpx.Response:
    return httpx.post(pair.peer_server.base_url + path, json=body,
                      headers={"Authorization": f"Bearer {pair.peer_token}"}, timeout=30)


def test_chat_is_relayed_unchanged_from_a_native_upstream(pair: Pair) -> None:
    r = pair.post("/v1/chat/completions", CHAT)
    assert r.status_code == 200, r.text
    direct = _direct(pair, "/v1/chat/completions", {**CHAT, "model": "fake-chat"}).json()
    body = r.json()
    assert body["choices"] == direct["choices"]  # same seed, same fake answer: it really came from the peer
    assert body["usage"] == direct["usage"]


def test_lowcode_dialect_wraps_the_relayed_body(pair: Pair) -> None:
    r = httpx.post(f"{pair.url}/mistralai/v1/chat/completions", params={"api_token": pair.token}, json=CHAT)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["object"] == "chat.completion" and data["choices"][0]["message"]["content"]


def test_stream_is_relayed_chunk_by_chunk(pair: Pair) -> None:
    with httpx.stream("POST", pair.url + "/v1/chat/completions", json={**CHAT, "stream": True},
                      headers={"Authorization": f"Bearer {pair.token}"}, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["usage"]["completion_tokens"] > 0


def test_embeddings_and_fim_through_a_native_upstream(pair: Pair) -> None:
    r = pair.post("/v1/embeddings", {"model": "remote-embed", "input": ["a", "b"]})
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 2
    direct = _direct(pair, "/v1/embeddings", {"model": "fake-embed", "input": ["a", "b"]}).json()
    assert r.json()["data"] == direct["data"]
    r = pair.post("/v1/fim/completions", {"model": "remote-chat", "prompt": "def f(", "suffix": "pass"})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]


def test_openai_kind_chat_fim_embeddings_and_stream(pair: Pair) -> None:
    r = pair.post("/v1/chat/completions", {**CHAT, "model": "oa-chat"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "oa-chat" and body["object"] == "chat.completion"
    direct = _direct(pair, "/v1/chat/completions", {**CHAT, "model": "fake-chat"}).json()
    assert body["choices"][0]["message"]["content"] == direct["choices"][0]["message"]["content"]
    assert body["usage"]["prompt_tokens"] == direct["usage"]["prompt_tokens"]

    with httpx.stream("POST", pair.url + "/v1/chat/completions", json={**CHAT, "model": "oa-chat", "stream": True},
                      headers={"Authorization": f"Bearer {pair.token}"}, timeout=30) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == direct["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["completion_tokens"] > 0

    r = pair.post("/v1/embeddings", {"model": "oa-embed", "input": "x"})
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 8
    r = pair.post("/v1/embeddings", {"model": "oa-embed", "input": "x", "output_dtype": "int8"})
    assert r.status_code == 400 and "output_dtype" in r.json()["message"]


def test_openai_kind_fim_goes_to_completions(pair: Pair) -> None:
    # the peer (another mistral-gateway) has no /v1/completions: its 404 comes back with the status kept
    r = pair.post("/v1/fim/completions", {"model": "oa-chat", "prompt": "a", "suffix": "b"})
    assert r.status_code == 404
    assert "unknown route" in r.json()["message"]


def test_official_sdk_through_the_router(pair: Pair) -> None:
    from mistralai.client import Mistral

    client = Mistral(api_key=pair.token, server_url=pair.url)
    res = client.chat.complete(model="remote-chat", messages=[{"role": "user", "content": "hi"}])
    assert res.choices[0].message.content
    pieces = [e.data.choices[0].delta.content for e in client.chat.stream(
        model="oa-chat", messages=[{"role": "user", "content": "hi"}]) if e.data.choices]
    assert "".join(p for p in pieces if p)
    emb = client.embeddings.create(model="remote-embed", inputs=["one"])
    assert len(emb.data[0].embedding) == 8


def test_fallback_when_the_first_upstream_is_down(pair: Pair) -> None:
    r = pair.post("/v1/chat/completions", {**CHAT, "model": "fallback-chat"})
    assert r.status_code == 200, r.text
    r = pair.post("/v1/chat/completions", {**CHAT, "model": "fallback-chat", "stream": True})
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")


def test_fallback_to_another_local_model(pair: Pair) -> None:
    r = pair.post("/v1/chat/completions", {**CHAT, "model": "or-local"})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "local-chat"  # says what served it


def test_no_target_answers_gives_502_in_both_dialects(pair: Pair) -> None:
    r = pair.post("/v1/chat/completions", {**CHAT, "model": "dead-chat"})
    assert r.status_code == 502
    assert r.json()["code"] == "UPSTREAM_UNAVAILABLE" and "'down'" in r.json()["message"]
    r = httpx.post(f"{pair.url}/mistralai/v1/chat/completions", params={"api_token": pair.token},
                   json={**CHAT, "model": "dead-chat"})
    assert r.status_code == 502 and r.json()["data"]["error"]["code"] == "UPSTREAM_UNAVAILABLE"


def test_upstream_errors_keep_status_and_message(pair: Pair) -> None:
    # fake-chat has no vision: the peer's 400 comes back, in the caller's dialect
    body = {**CHAT, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "http://x/y.png"}]}]}
    r = pair.post("/v1/chat/completions", body)
    direct = _direct(pair, "/v1/chat/completions", {**body, "model": "fake-chat"})
    assert r.status_code == direct.status_code == 400
    assert r.json()["message"] == direct.json()["message"]
    assert r.json()["code"] == direct.json()["code"]
    r = httpx.post(f"{pair.url}/mistralai/v1/chat/completions", params={"api_token": pair.token}, json=body)
    assert r.status_code == 400 and r.json()["data"]["error"]["message"] == direct.json()["message"]
    # 422 keeps FastAPI's detail items
    r = pair.post("/v1/chat/completions", {**CHAT, "temperature": 9})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][-1] == "temperature"


@pytest.mark.parametrize("model", ["remote-chat", "oa-chat"])  # relayed raw, and translated event by event
def test_client_disconnect_cancels_the_upstream_stream(pair: Pair, monkeypatch: pytest.MonkeyPatch,
                                                       model: str) -> None:
    state = {"started": 0, "closed": 0}
    original = fake.FakeTextEngine.stream

    async def slow(self, prompt, params):  # type: ignore[no-untyped-def]
        state["started"] += 1
        try:
            async for delta in original(self, prompt, params):
                yield delta
            for _ in range(200):
                await asyncio.sleep(0.05)
                yield fake.Delta(" more")
        finally:
            state["closed"] += 1

    monkeypatch.setattr(fake.FakeTextEngine, "stream", slow)
    with httpx.stream("POST", pair.url + "/v1/chat/completions", json={**CHAT, "model": model, "stream": True},
                      headers={"Authorization": f"Bearer {pair.token}"}, timeout=30) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
    deadline = time.monotonic() + 5
    while state["closed"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state == {"started": 1, "closed": 1}  # the peer stopped generating well before its 10 s stream ended


def test_passthrough_workspace_forwards_every_operation(pair: Pair, tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {pair.cloud_token}"}
    # a model the front does not know at all: the peer serves it
    r = httpx.post(pair.url + "/v1/chat/completions", headers=auth, json={**CHAT, "model": "fake-chat"})
    assert r.status_code == 200, r.text
    with httpx.stream("POST", f"{pair.url}/mistralai/v1/chat/completions", params={"api_token": pair.cloud_token},
                      json={**CHAT, "model": "fake-chat", "stream": True}, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and orjson.loads(events[-2])["usage"]["completion_tokens"] > 0
    r = httpx.post(f"{pair.url}/mistralai/v1/embeddings", params={"api_token": pair.cloud_token},
                   json={"model": "fake-embed", "input": ["a"]})
    assert r.status_code == 200 and len(r.json()["data"]["data"][0]["embedding"]) == 8
    r = httpx.get(pair.url + "/v1/models", headers=auth)
    assert {m["id"] for m in r.json()["data"]} == {"fake-chat", "fake-embed"}
    # files: a multipart upload streamed through, then retrieve, download and delete, in the lowcode dialect too
    upload = httpx.post(pair.url + "/v1/files", headers=auth, files={"file": ("notes.jsonl", b'{"a": 1}\n')},
                        data={"purpose": "fine-tune"})
    assert upload.status_code == 200, upload.text
    file_id = upload.json()["id"]
    peer_files = httpx.get(pair.peer_server.base_url + "/v1/files",
                           headers={"Authorization": f"Bearer {pair.peer_token}"}).json()
    assert file_id in {f["id"] for f in peer_files["data"]}
    r = httpx.get(f"{pair.url}/mistralai/v1/files/file_id", params={"api_token": pair.cloud_token,
                                                                     "file_id": file_id})
    assert r.status_code == 200 and r.json()["data"]["filename"] == "notes.jsonl"
    r = httpx.get(f"{pair.url}/v1/files/{file_id}/content", headers=auth)
    assert r.status_code == 200 and r.content == b'{"a": 1}\n'
    r = httpx.delete(f"{pair.url}/v1/files/{file_id}", headers=auth)
    assert r.status_code == 200 and r.json()["deleted"] is True
    r = httpx.get(f"{pair.url}/mistralai/v1/files/{file_id}", params={"api_token": pair.cloud_token})
    assert r.status_code == 404 and r.json()["data"]["error"]["message"]
    # the libraries are the upstream's too (every operation is built now: no 501 to relay)
    r = httpx.get(pair.url + "/v1/libraries", headers=auth)
    assert r.status_code == 200 and r.json() == {"data": []}
    r = httpx.get(f"{pair.url}/v1/libraries/{uuid.uuid4()}", headers=auth)
    assert r.status_code == 404 and r.json()["code"] == "LIBRARY_NOT_FOUND"
    # the other workspace is not passed through: its routed model still works, its files stay local
    r = httpx.get(pair.url + "/v1/files", headers={"Authorization": f"Bearer {pair.token}"})
    assert r.status_code == 200 and r.json()["data"] == []
