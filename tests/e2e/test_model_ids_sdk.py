"""Model ids through the official SDK (mistralai 3.7.0) against a live server, and a family routed to an upstream
(a second gateway on loopback): dated and legacy ids as Mistral's docs and examples write them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mistralai.client import Mistral
from mistralai.client.errors import MistralError

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.services.container import build_services
from support import LiveServer

pytestmark = pytest.mark.e2e

QWEN = "qwen2.5-coder-1.5b-instruct"
FIM = "<|fim_prefix|>{prompt}<|fim_suffix|>{suffix}<|fim_middle|>"


def _models(chat_aliases: list[str]) -> list[ModelEntry]:
    """The default catalog's ids on fake engines (the default family table points at them)."""
    return [
        ModelEntry(id=QWEN, aliases=chat_aliases, engine="fake",
                   capabilities=["completion_chat", "completion_fim", "function_calling"], fim_template=FIM),
        ModelEntry(id="smollm2-135m-instruct", engine="fake", capabilities=["completion_chat"]),
        ModelEntry(id="all-minilm-l6-v2", aliases=["mistral-embed"], engine="fake", capabilities=[]),
    ]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:  # overrides conftest's: the live_server fixture builds on it
    return Settings(data_dir=tmp_path / "data", bootstrap_dev_token=False,
                    models=_models(["mistral-small-latest", "mistral-large-latest"]))


@pytest.fixture
def sdk(live_server: Any, token: str) -> Iterator[Mistral]:
    with Mistral(api_key=token, server_url=live_server.base_url, timeout_ms=20_000) as client:
        yield client


@pytest.mark.parametrize("model", ["mistral-large-2411", "open-mistral-7b", "mistral-tiny", "ministral-8b-2410",
                                   "mistral-medium-2505", "pixtral-12b-2409"])
def test_sdk_chat_with_dated_and_legacy_ids(sdk: Mistral, model: str) -> None:
    res = sdk.chat.complete(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=6, random_seed=1)
    assert res.model == model
    assert isinstance(res.choices[0].message.content, str) and res.choices[0].message.content
    chunks = list(sdk.chat.stream(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=6))
    assert chunks and {c.data.model for c in chunks} == {model}


def test_sdk_fim_and_embeddings_with_dated_ids(sdk: Mistral) -> None:
    res = sdk.fim.complete(model="codestral-2405", prompt="def f(", suffix="return x", max_tokens=4)
    assert res.model == "codestral-2405" and res.choices[0].message.content
    emb = sdk.embeddings.create(model="mistral-embed-2312", inputs=["hello", "world"])
    assert emb.model == "mistral-embed-2312" and len(emb.data) == 2


def test_sdk_retrieves_cards_for_dated_ids(sdk: Mistral) -> None:
    card = sdk.models.retrieve(model_id="mistral-large-2411")
    assert card.id == "mistral-large-2411" and card.capabilities.completion_chat is True
    assert sdk.models.retrieve(model_id="magistral-medium-2509").capabilities.reasoning is True
    assert sdk.models.retrieve(model_id="mistral-medium-3-5").capabilities.reasoning is True
    assert sdk.models.retrieve(model_id="mistral-small-latest").capabilities.reasoning is False
    assert "mistral-large-2411" not in {m.id for m in sdk.models.list().data}


def test_sdk_errors_for_engineless_and_unknown_families(sdk: Mistral) -> None:
    with pytest.raises(MistralError) as err:
        sdk.chat.complete(model="mistral-moderation-2411", messages=[{"role": "user", "content": "Hi"}])
    assert err.value.status_code == 400 and "moderation" in err.value.body
    with pytest.raises(MistralError) as err:
        sdk.chat.complete(model="mistral-foo-2411", messages=[{"role": "user", "content": "Hi"}])
    assert err.value.status_code == 404 and "MODEL_NOT_FOUND" in err.value.body


# -- a whole family routed to an upstream ---------------------------------------------------------------------


@pytest.fixture
def front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """A peer gateway (fake engines, default family table) behind a front gateway whose catalog routes the
    ``mistral-large`` family to it by one entry, ``mistral-large-latest``, with a local fallback."""
    peer = build_services(Settings(data_dir=tmp_path / "peer", bootstrap_dev_token=False,
                                   models=_models(["mistral-large-latest"])))
    peer_token, _ = peer.tokens.create("front", scopes=["*"])
    peer_server = LiveServer(peer)
    peer_server.start()
    monkeypatch.setenv("PEER_KEY", peer_token)
    front = build_services(Settings(
        data_dir=tmp_path / "front", bootstrap_dev_token=False,
        upstreams=[{"name": "peer", "kind": "mistral-gateway", "base_url": peer_server.base_url,
                    "api_key_env": "PEER_KEY", "allow_private_network": True}],
        models=[*_models(["mistral-small-latest"]),
                ModelEntry(id="mistral-large-latest", engine="none", capabilities=["completion_chat"],
                           routes=[{"upstream": "peer"}, {"upstream": "local", "model": QWEN}])],
    ))
    token, _ = front.tokens.create("user", scopes=["*"])
    front_server = LiveServer(front)
    front_server.start()
    yield front_server.base_url, token
    front_server.stop()
    peer_server.stop()
    front.close()
    peer.close()


def test_a_family_routed_upstream_keeps_the_dated_id(front: tuple[str, str]) -> None:
    url, token = front
    with Mistral(api_key=token, server_url=url, timeout_ms=20_000) as client:
        res = client.chat.complete(model="mistral-large-2411", messages=[{"role": "user", "content": "Hi"}],
                                   max_tokens=6, random_seed=2)
    assert res.model == "mistral-large-2411"  # the peer saw (and echoed) the dated id, not mistral-large-latest
    card = httpx.get(f"{url}/v1/models/mistral-large-2411", headers={"Authorization": f"Bearer {token}"})
    assert card.status_code == 200 and card.json()["name"] == "mistral-large-latest"
    with Mistral(api_key=token, server_url=url, timeout_ms=20_000) as client:
        local = client.chat.complete(model="mistral-small-2409", messages=[{"role": "user", "content": "Hi"}],
                                     max_tokens=6, random_seed=2)
    assert local.model == "mistral-small-2409"  # another family stays on the local stand-in
