"""Model ids over HTTP (fake engines): dated and legacy Mistral ids answer 200 with the caller's id echoed, in both
dialects, streamed or not; engine-less families answer 400 naming the capability; unknown families 404."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from mistral_gateway.config import ModelEntry, ModelFamily, Settings
from mistral_gateway.http.app import create_app
from mistral_gateway.services.container import Services, build_services

FIM = "<|fim_prefix|>{prompt}<|fim_suffix|>{suffix}<|fim_middle|>"
QWEN = "qwen2.5-coder-1.5b-instruct"
Env = tuple[TestClient, str, Services]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    settings = Settings(
        data_dir=tmp_path / "data", bootstrap_dev_token=False,
        models=[  # the default catalog's ids and some aliases, on fake engines
            ModelEntry(id=QWEN, aliases=["mistral-small-latest", "mistral-large-latest", "codestral-latest"],
                       engine="fake", capabilities=["completion_chat", "completion_fim", "function_calling"],
                       fim_template=FIM),
            ModelEntry(id="all-minilm-l6-v2", aliases=["mistral-embed"], engine="fake", capabilities=[]),
            ModelEntry(id="legacy-chat", engine="fake", max_context_length=512, capabilities=["completion_chat"]),
        ],
        model_families=[ModelFamily(prefix="open-mistral", model="legacy-chat")],  # an operator's row
    )
    services = build_services(settings)
    token, _ = services.tokens.create("t")
    with TestClient(create_app(services=services)) as client:
        yield client, token, services
    services.close()


def post(env: Env, path: str, body: dict[str, Any], lowcode: bool = False) -> Any:
    client, token, _ = env
    if lowcode:
        return client.post(f"/mistralai{path}", params={"api_token": token}, json=body)
    return client.post(path, headers={"Authorization": f"Bearer {token}"}, json=body)


def get(env: Env, path: str) -> Any:
    client, token, _ = env
    return client.get(path, headers={"Authorization": f"Bearer {token}"})


def ask(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 5,
            "random_seed": 3, **extra}


@pytest.mark.parametrize(("model", "served_by"), [
    ("mistral-large-2411", QWEN), ("mistral-tiny", QWEN), ("mistral-small-2409", QWEN), ("codestral-2501", QWEN),
    ("mistral-saba-latest", QWEN), ("devstral-small-2507", QWEN), ("pixtral-12b-2409", QWEN),
    ("open-mistral-7b", "legacy-chat"), ("open-mistral-nemo", QWEN),  # a longer default prefix than the override
])
@pytest.mark.parametrize("lowcode", [False, True])
def test_dated_and_legacy_ids_chat_with_the_id_echoed(env: Env, model: str, served_by: str, lowcode: bool) -> None:
    r = post(env, "/v1/chat/completions", ask(model), lowcode=lowcode)
    assert r.status_code == 200, r.text
    body = r.json()["data"] if lowcode else r.json()
    assert body["model"] == model
    assert body["choices"][0]["message"]["content"]
    # the stand-in answers: the same text as through its own id (fake engines answer from prompt and seed only,
    # so the two models' answers are told apart by the context length the tiny one enforces below)
    same = post(env, "/v1/chat/completions", ask(served_by)).json()
    assert body["choices"][0]["message"]["content"] == same["choices"][0]["message"]["content"]
    big = ask(model, max_tokens=1000)
    assert post(env, "/v1/chat/completions", big).status_code == (400 if served_by == "legacy-chat" else 200)


@pytest.mark.parametrize("model", ["magistral-medium-2509", "magistral-small-latest", "mistral-medium-3.5"])
def test_reasoning_family_ids_chat(env: Env, model: str) -> None:
    # the content's shape (thinking chunks or text) is the reasoning feature's business; the id is ours
    r = post(env, "/v1/chat/completions", ask(model))
    assert r.status_code == 200, r.text
    assert r.json()["model"] == model


def test_streamed_chunks_echo_the_id(env: Env) -> None:
    r = post(env, "/v1/chat/completions", ask("mistral-large-2411", stream=True))
    assert r.status_code == 200
    chunks = [json.loads(line[6:]) for line in r.text.split("\n") if line.startswith("data: {")]
    assert chunks and {c["model"] for c in chunks} == {"mistral-large-2411"}


def test_fim_and_embeddings_echo_the_id(env: Env) -> None:
    r = post(env, "/v1/fim/completions", {"model": "codestral-2508", "prompt": "def f(", "suffix": "return x",
                                          "max_tokens": 4})
    assert r.status_code == 200 and r.json()["model"] == "codestral-2508"
    r = post(env, "/v1/embeddings", {"model": "mistral-embed-2312", "input": ["hello"]})
    assert r.status_code == 200 and r.json()["model"] == "mistral-embed-2312"
    assert len(r.json()["data"]) == 1


def test_usage_records_the_id_the_caller_sent(env: Env) -> None:
    _, _, services = env
    assert post(env, "/v1/chat/completions", ask("mistral-large-2411")).status_code == 200
    records, _ = services.usage.list()
    assert [row.model for row in records] == ["mistral-large-2411"]


@pytest.mark.parametrize(("model", "capability"), [("mistral-moderation-2411", "moderation"),
                                                   ("mistral-ocr-2505", "ocr"), ("voxtral-tts-latest", "audio")])
def test_engineless_families_are_400_naming_the_capability(env: Env, model: str, capability: str) -> None:
    r = post(env, "/v1/chat/completions", ask(model))
    assert r.status_code == 400
    assert r.json()["code"] == "UNSUPPORTED_MODEL_CAPABILITY" and capability in r.json()["message"]
    r = post(env, "/v1/chat/completions", ask(model), lowcode=True)
    assert r.status_code == 400 and capability in r.json()["data"]["error"]["message"]
    r = post(env, "/v1/embeddings", {"model": model, "input": ["hello"]})
    assert r.status_code == 400 and r.json()["code"] == "UNSUPPORTED_MODEL_CAPABILITY"


@pytest.mark.parametrize("model", ["mistral-foo-latest", "mistral-large-2413", "ministral-3b-2410",  # no stand-in
                                   "mistral-large-" + "9" * 5000])
def test_unknown_families_are_404(env: Env, model: str) -> None:
    r = post(env, "/v1/chat/completions", ask(model))
    assert r.status_code == 404 and r.json()["code"] == "MODEL_NOT_FOUND"
    assert len(r.text) < 1000


def test_model_cards_for_dated_ids(env: Env) -> None:
    r = get(env, "/v1/models/mistral-large-2411")
    assert r.status_code == 200
    card = r.json()
    assert (card["id"], card["name"], card["type"]) == ("mistral-large-2411", QWEN, "base")
    assert card["capabilities"]["completion_chat"] is True and card["capabilities"]["reasoning"] is False
    assert get(env, "/v1/models/magistral-small-2509").json()["capabilities"]["reasoning"] is True
    assert get(env, "/v1/models/mistral-foo-2411").status_code == 404
    listed = {m["id"] for m in get(env, "/v1/models").json()["data"]}
    assert "mistral-large-latest" in listed and "mistral-large-2411" not in listed
    client, token, _ = env
    r = client.delete("/v1/models/mistral-large-2411", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
