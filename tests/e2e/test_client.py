"""``mistral_gateway.client`` against real servers on loopback (fake engines, so it is fast): every implemented
area, typed errors, and the URL-format fallback against a server started with the new format disabled."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mistral_gateway.client import (
    AsyncClient,
    AuthenticationError,
    Client,
    FormatMemory,
    NotFoundError,
    ValidationError,
)
from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.protocol.agents import Agent, AgentList
from mistral_gateway.protocol.chat import ChatCompletionResponse, CompletionChunk
from mistral_gateway.protocol.embeddings import EmbeddingResponse
from mistral_gateway.protocol.files import ListFilesOut, RetrieveFileOut, UploadFileOut
from mistral_gateway.services.container import build_services
from support import LiveServer

pytestmark = pytest.mark.e2e

FIM = "<|fim_prefix|>{prompt}<|fim_suffix|>{suffix}<|fim_middle|>"
MODELS = [
    ModelEntry(id="fake-chat", aliases=["mistral-small-latest"], engine="fake",
               capabilities=["completion_chat", "completion_fim"], fim_template=FIM),
    ModelEntry(id="fake-embed", aliases=["mistral-embed"], engine="fake", capabilities=[]),
]
MESSAGES = [{"role": "user", "content": "Hello there"}]
JSONL = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'


@pytest.fixture
def settings(tmp_path: Path) -> Settings:  # overrides conftest's: fake models, both URL formats
    return Settings(data_dir=tmp_path / "data", bootstrap_dev_token=False, models=MODELS)


@pytest.fixture
def old_only(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A second server with the new URL format disabled (config flag): only the old format answers."""
    settings = Settings(data_dir=tmp_path / "old-only", bootstrap_dev_token=False, models=MODELS,
                        lowcode_new_format=False)
    services = build_services(settings)
    token, _ = services.tokens.create("old")
    server = LiveServer(services)
    server.start()
    yield server.base_url, token
    server.stop()
    services.close()


class Counter:
    """An httpx event hook recording (method, path, query) of every request a client sends."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    def __call__(self, request: httpx.Request) -> None:
        params = {k: v for k, v in request.url.params.items() if k != "api_token"}
        self.seen.append((request.method, request.url.path, params))

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.seen]


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "formats.json"


@pytest.fixture
def client(live_server: LiveServer, token: str, cache: Path) -> Iterator[Client]:
    with Client(live_server.base_url, token, cache_path=cache) as c:
        yield c


def test_chat_fim_and_embeddings(client: Client) -> None:
    reply = client.chat.complete(model="mistral-small-latest", messages=MESSAGES, max_tokens=5, random_seed=3)
    assert isinstance(reply, ChatCompletionResponse)
    assert reply.model == "mistral-small-latest" and reply.choices[0].message.content
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0

    chunks = list(client.chat.stream(model="mistral-small-latest", messages=MESSAGES, max_tokens=5, random_seed=3))
    assert all(isinstance(c, CompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == reply.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == reply.choices[0].finish_reason

    fim = client.fim.complete(model="mistral-small-latest", prompt="def add(a, b):", suffix="\n", max_tokens=4)
    assert fim.choices[0].message.content
    assert list(client.fim.stream(model="mistral-small-latest", prompt="x", max_tokens=3))[-1].usage is not None

    embedded = client.embeddings.create(model="mistral-embed", input=["first text", "second text"])
    assert isinstance(embedded, EmbeddingResponse)
    assert [d.index for d in embedded.data] == [0, 1] and len(embedded.data[0].embedding) == 8  # the fake's size


def test_files_round_trip(client: Client, tmp_path: Path) -> None:
    source = tmp_path / "train.jsonl"
    source.write_bytes(JSONL * 3000)  # ~270 kB, streamed from disk
    progress: list[tuple[int, int | None]] = []
    uploaded = client.files.upload(source, purpose="fine-tune", progress=lambda d, t: progress.append((d, t)))
    assert isinstance(uploaded, UploadFileOut)
    assert (uploaded.filename, uploaded.bytes, uploaded.num_lines) == ("train.jsonl", source.stat().st_size, 3000)
    assert progress[-1] == (source.stat().st_size, source.stat().st_size)

    listing = client.files.list(purpose="fine-tune")
    assert isinstance(listing, ListFilesOut) and [f.id for f in listing.data] == [uploaded.id]
    got = client.files.retrieve(uploaded.id)
    assert isinstance(got, RetrieveFileOut) and got.deleted is False and got.filename == "train.jsonl"
    assert client.url_format == "new"  # both formats are served: the first one tried wins

    assert client.files.download(uploaded.id) == source.read_bytes()
    folder = tmp_path / "downloads"
    folder.mkdir()
    saved = client.files.download(uploaded.id, to=folder)
    assert saved == folder / "train.jsonl" and saved.read_bytes() == source.read_bytes()

    url = client.files.get_signed_url(uploaded.id, expiry=1).url
    assert httpx.get(url).content == source.read_bytes()  # no token needed

    assert client.files.delete(uploaded.id).deleted is True
    with pytest.raises(NotFoundError) as info:
        client.files.retrieve(uploaded.id)
    assert (info.value.status, info.value.code, info.value.param) == (404, "FILE_NOT_FOUND", "file_id")


def test_models_and_typed_errors(client: Client, live_server: LiveServer, cache: Path) -> None:
    ids = [m.id for m in client.models.list().data]
    assert {"fake-chat", "mistral-small-latest", "mistral-embed"} <= set(ids)
    assert client.models.retrieve("mistral-small-latest").type == "base"
    with pytest.raises(NotFoundError) as missing:
        client.models.retrieve("no-such-model")
    assert missing.value.code == "MODEL_NOT_FOUND"
    assert client.libraries.list().data == []  # every operation is built now (501s: tests/unit/test_client_retry)
    with pytest.raises(ValidationError) as invalid:
        client.embeddings.create(model="mistral-embed", input=[])  # refused client-side, same shape as the server
    assert invalid.value.detail[0]["loc"][:2] == ["body", "input"]
    with Client(live_server.base_url, "at_wrong", cache_path=cache) as wrong, \
            pytest.raises(AuthenticationError) as denied:
        wrong.models.list()
    assert denied.value.status == 401 and denied.value.code


def test_fallback_to_the_old_format_is_remembered_across_clients(old_only: tuple[str, str], cache: Path) -> None:
    base_url, token = old_only
    first = Counter()
    with Client(base_url, token, cache_path=cache, event_hooks={"request": [first]}) as client:
        uploaded = client.files.upload(b"{}\n", filename="a.jsonl")  # no path parameter: one URL in both formats
        assert client.files.retrieve(uploaded.id).id == uploaded.id
        assert first.paths()[1:] == [f"/mistralai/v1/files/{uploaded.id}", "/mistralai/v1/files/file_id"]
        assert first.seen[2][2] == {"file_id": uploaded.id}
        assert client.url_format == "old"
        assert client.files.download(uploaded.id) == b"{}\n"
        assert first.paths()[3:] == ["/mistralai/v1/files/file_id/content"]  # no second try any more

    assert FormatMemory(cache).get(base_url) == "old"
    assert json.loads(cache.read_text())["entries"][base_url]["mistralai"]["format"] == "old"

    second = Counter()  # a fresh client, as another process would be: reads the cache file
    with Client(base_url, token, cache_path=cache, event_hooks={"request": [second]}) as again:
        assert again.files.get_signed_url(uploaded.id, expiry=1).url
        assert again.files.delete(uploaded.id).deleted is True
    assert second.seen == [("GET", "/mistralai/v1/files/file_id/url", {"file_id": uploaded.id, "expiry": "1"}),
                           ("DELETE", "/mistralai/v1/files/file_id", {"file_id": uploaded.id})]


def test_one_cache_file_keeps_each_server_s_format(old_only: tuple[str, str], live_server: LiveServer, token: str,
                                                   cache: Path) -> None:
    old_url, old_token = old_only
    with Client(old_url, old_token, cache_path=cache) as old, Client(live_server.base_url, token,
                                                                     cache_path=cache) as both:
        with pytest.raises(NotFoundError):
            old.files.retrieve("00000000-0000-0000-0000-000000000000")
        with pytest.raises(NotFoundError):
            both.files.retrieve("00000000-0000-0000-0000-000000000000")
    assert FormatMemory(cache).all() == {old_url: {"mistralai": "old"}, live_server.base_url: {"mistralai": "new"}}


def test_async_client(live_server: LiveServer, token: str, old_only: tuple[str, str], cache: Path) -> None:
    async def main() -> dict[str, Any]:
        async with AsyncClient(live_server.base_url, token, cache_path=cache) as client:
            reply = await client.chat.complete(model="mistral-small-latest", messages=MESSAGES, max_tokens=4)
            stream = await client.chat.stream(model="mistral-small-latest", messages=MESSAGES, max_tokens=4)
            pieces = [c.choices[0].delta.content or "" async for c in stream]
            uploaded = await client.files.upload(b"abc", filename="x.txt", purpose="ocr")
            content = await client.files.download(uploaded.id)
        old_url, old_token = old_only
        async with AsyncClient(old_url, old_token, cache_path=cache) as old:
            models = await old.models.list()
            card = await old.models.retrieve("fake-chat")
        return {"reply": reply.choices[0].message.content, "streamed": "".join(pieces), "content": content,
                "models": len(models.data), "card": card.id, "format": old.url_format}

    out = asyncio.run(main())
    assert out["reply"] and out["streamed"]
    assert out["content"] == b"abc" and out["models"] >= 2 and out["card"] == "fake-chat"
    assert out["format"] == "old"


def test_agents(client: Client) -> None:
    agent = client.agents.create(model="mistral-small-latest", name="client", instructions="Be brief.")
    assert isinstance(agent, Agent) and agent.id.startswith("ag_") and agent.version == 0
    assert client.agents.update(agent.id, name="renamed").versions == [0, 1]
    assert client.agents.update_version(agent.id, version=0).name == "client"  # the query parameter
    listed = client.agents.list(search="client")
    assert isinstance(listed, AgentList) and [a.id for a in listed.root] == [agent.id]
    assert client.agents.get(agent.id, agent_version=1).name == "renamed"
    reply = client.agents.complete(agent_id=agent.id, messages=MESSAGES, max_tokens=3)
    assert isinstance(reply, ChatCompletionResponse) and reply.usage.completion_tokens <= 3
    chunks = list(client.agents.stream(agent_id=agent.id, messages=MESSAGES, max_tokens=3))
    assert all(isinstance(c, CompletionChunk) for c in chunks) and chunks[-1].usage is not None
    assert client.agents.delete(agent.id) is None
    with pytest.raises(NotFoundError):
        client.agents.get(agent.id)
