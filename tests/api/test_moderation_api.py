"""The four moderation and classification operations over HTTP, in both dialects, on the fake classifier engine:
shapes, capability and model errors in each dialect's error shape, limits, scopes, usage, and a batch of
``/v1/moderations`` lines (real models: tests/e2e/test_moderation_sdk.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from batch_support import wait_done
from classifier_support import MODERATION_MODEL, with_fake_moderation
from dialect_support import data, error
from mistral_gateway.config import Settings, default_models
from mistral_gateway.engines.base import MODERATION_CATEGORIES
from mistral_gateway.http.app import create_app
from mistral_gateway.protocol.classifiers import MAX_INPUTS, MAX_TOTAL_CHARS
from mistral_gateway.services.container import Services, build_services

DIALECTS = ("native", "lowcode")
CONVERSATION = [{"role": "user", "content": "my card number leaked"},
                {"role": "assistant", "content": "call your bank about the financial risk"}]


class Env:
    def __init__(self, client: TestClient, services: Services, token: str) -> None:
        self.client, self.services, self.token = client, services, token

    def post(self, dialect: str, path: str, body: dict[str, Any], token: str | None = None) -> httpx.Response:
        token = token or self.token
        if dialect == "native":
            return self.client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
        return self.client.post("/mistralai" + path, json=body, params={"api_token": token})


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    models = with_fake_moderation([m.model_copy(update={"engine": "fake", "asset": None}) for m in default_models()])
    settings = Settings(data_dir=tmp_path_factory.mktemp("moderation") / "data", bootstrap_dev_token=False,
                        models=models)
    services = build_services(settings)
    token, _ = services.tokens.create("t")
    with TestClient(create_app(services=services)) as client:
        yield Env(client, services, token)
    services.close()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_moderations(env: Env, dialect: str) -> None:
    out = data(env.post(dialect, "/v1/moderations", {"model": MODERATION_MODEL,
                                                      "input": ["hate and discrimination", "a fine day"]}), dialect)
    assert out["model"] == MODERATION_MODEL and len(out["id"]) == 32
    hateful, fine = out["results"]
    assert list(hateful["categories"]) == list(MODERATION_CATEGORIES)
    assert hateful["categories"]["hate_and_discrimination"] is True and sum(hateful["categories"].values()) == 1
    assert not any(fine["categories"].values())
    assert all(0 <= s <= 1 for s in fine["category_scores"].values())


@pytest.mark.parametrize("dialect", DIALECTS)
def test_dated_id_echoed(env: Env, dialect: str) -> None:
    out = data(env.post(dialect, "/v1/moderations", {"model": "mistral-moderation-2411", "input": "x"}), dialect)
    assert out["model"] == "mistral-moderation-2411" and len(out["results"]) == 1


@pytest.mark.parametrize("dialect", DIALECTS)
def test_chat_moderations(env: Env, dialect: str) -> None:
    one = data(env.post(dialect, "/v1/chat/moderations", {"model": MODERATION_MODEL, "input": CONVERSATION}),
               dialect)
    assert len(one["results"]) == 1
    flagged = {c for c, hit in one["results"][0]["categories"].items() if hit}
    assert flagged == {"financial"}  # the last turn; the first turn's words fall in the context, not scored alone
    many = data(env.post(dialect, "/v1/chat/moderations", {"model": MODERATION_MODEL,
                                                            "input": [CONVERSATION, [CONVERSATION[0]]]}), dialect)
    assert len(many["results"]) == 2


@pytest.mark.parametrize("dialect", DIALECTS)
def test_classifications(env: Env, dialect: str) -> None:
    out = data(env.post(dialect, "/v1/classifications", {"model": MODERATION_MODEL, "input": ["pii", "law"]}),
               dialect)
    assert [r["moderation"]["scores"]["pii"] for r in out["results"]] == [0.9, 0.1]
    assert set(out["results"][0]["moderation"]["scores"]) == set(MODERATION_CATEGORIES)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_chat_classifications(env: Env, dialect: str) -> None:
    for value, count in (({"messages": CONVERSATION}, 1), ([{"messages": CONVERSATION}] * 3, 3)):
        out = data(env.post(dialect, "/v1/chat/classifications", {"model": MODERATION_MODEL, "input": value}),
                   dialect)
        assert len(out["results"]) == count and out["results"][0]["moderation"]["scores"]["financial"] == 0.9


OPS = [("/v1/moderations", "x"), ("/v1/classifications", "x"), ("/v1/chat/moderations", CONVERSATION),
       ("/v1/chat/classifications", {"messages": CONVERSATION})]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("path", "value"), OPS)
def test_a_chat_model_is_400_naming_the_capability(env: Env, dialect: str, path: str, value: Any) -> None:
    err = error(env.post(dialect, path, {"model": "mistral-small-latest", "input": value}), dialect, 400)
    wanted = "moderation" if "moderations" in path else "classification"
    assert err["code"] == "UNSUPPORTED_MODEL_CAPABILITY" and f"'{wanted}'" in err["message"]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("path", "value"), OPS)
def test_an_unknown_model_is_404(env: Env, dialect: str, path: str, value: Any) -> None:
    assert error(env.post(dialect, path, {"model": "no-such-model", "input": value}), dialect, 404)["code"] == \
        "MODEL_NOT_FOUND"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_moderation_model_cannot_chat_or_embed(env: Env, dialect: str) -> None:
    chat = {"model": MODERATION_MODEL, "messages": [{"role": "user", "content": "hi"}]}
    err = error(env.post(dialect, "/v1/chat/completions", chat), dialect, 400)
    assert err["code"] == "UNSUPPORTED_MODEL_CAPABILITY" and "'completion_chat'" in err["message"]
    err = error(env.post(dialect, "/v1/embeddings", {"model": MODERATION_MODEL, "input": "x"}), dialect, 400)
    assert err["code"] == "UNSUPPORTED_MODEL_CAPABILITY"


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("path", "value"), [("/v1/moderations", []), ("/v1/classifications", []),
                                             ("/v1/chat/moderations", []), ("/v1/chat/moderations", [[]]),
                                             ("/v1/chat/classifications", []),
                                             ("/v1/chat/classifications", {"messages": []})])
def test_empty_input_is_400(env: Env, dialect: str, path: str, value: Any) -> None:
    err = error(env.post(dialect, path, {"model": MODERATION_MODEL, "input": value}), dialect, 400)
    assert err["code"] == "EMPTY_INPUT"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_oversize_inputs_are_refused(env: Env, dialect: str) -> None:
    body = {"model": MODERATION_MODEL, "input": ["x"] * (MAX_INPUTS + 1)}
    assert env.post(dialect, "/v1/moderations", body).status_code == 422
    assert env.post(dialect, "/v1/moderations", {"model": MODERATION_MODEL, "input": "x" * 100_001}).status_code \
        == 422
    per = MAX_TOTAL_CHARS // 20 + 1  # under the per-text limit, over the total
    err = error(env.post(dialect, "/v1/moderations", {"model": MODERATION_MODEL, "input": ["y" * per] * 20}),
                dialect, 413)
    assert err["code"] == "INPUT_TOO_LARGE" and len(err["message"]) < 200
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": "https://example.com/a.png"}]}]
    err = error(env.post(dialect, "/v1/chat/moderations", {"model": MODERATION_MODEL, "input": image}), dialect, 400)
    assert err["code"] == "UNSUPPORTED_CONTENT"


def test_a_thousand_inputs_in_one_request(env: Env) -> None:
    out = data(env.post("native", "/v1/moderations", {"model": MODERATION_MODEL,
                                                       "input": [f"text {i}" for i in range(1000)]}), "native")
    assert len(out["results"]) == 1000


def test_scopes(env: Env) -> None:
    chat_only, _ = env.services.tokens.create("chat", scopes=["chat"])
    for dialect in DIALECTS:
        assert env.post(dialect, "/v1/moderations", {"model": MODERATION_MODEL, "input": "x"}, chat_only) \
            .status_code == 403
        assert env.post(dialect, "/v1/chat/classifications", {"model": MODERATION_MODEL, "input": {
            "messages": CONVERSATION}}, chat_only).status_code == 403
    both, _ = env.services.tokens.create("mod", scopes=["moderation"])
    assert env.post("native", "/v1/chat/moderations", {"model": MODERATION_MODEL, "input": CONVERSATION},
                    both).status_code == 200
    assert env.post("native", "/v1/classifications", {"model": MODERATION_MODEL, "input": "x"}, both) \
        .status_code == 403


def test_usage_counts_the_encoders_tokens(tmp_path: Path) -> None:
    models = with_fake_moderation([m.model_copy(update={"engine": "fake", "asset": None}) for m in default_models()])
    services = build_services(Settings(data_dir=tmp_path / "data", bootstrap_dev_token=False, models=models))
    token, _ = services.tokens.create("t")
    with TestClient(create_app(services=services)) as client:
        r = client.post("/v1/moderations", json={"model": MODERATION_MODEL, "input": ["one two three", "four"]},
                        headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    records, _ = services.usage.list()
    services.close()
    assert [(row.operation, row.model, row.prompt_tokens, row.completion_tokens) for row in records] == \
        [("moderations", MODERATION_MODEL, 4, 0)]  # the fake engine counts words


def test_a_batch_of_moderations(env: Env) -> None:
    requests = [{"custom_id": "hate", "body": {"input": ["hate and discrimination"]}},
                {"custom_id": "two", "body": {"input": ["selfharm", "fine"]}},
                {"custom_id": "empty", "body": {"input": []}}]
    headers = {"Authorization": f"Bearer {env.token}"}
    r = env.client.post("/v1/batch/jobs", headers=headers, json={"endpoint": "/v1/moderations",
                                                                 "model": MODERATION_MODEL, "requests": requests})
    assert r.status_code == 200, r.text
    job = wait_done(lambda i: env.client.get(f"/v1/batch/jobs/{i}", headers=headers,
                                             params={"inline": "true"}).json(), r.json()["id"])
    assert job["status"] == "SUCCESS" and job["succeeded_requests"] == 2 and job["failed_requests"] == 1, job
    by_id = {o["custom_id"]: o for o in job["outputs"]}
    hate = by_id["hate"]["response"]["body"]["results"][0]
    assert by_id["hate"]["response"]["status_code"] == 200 and hate["categories"]["hate_and_discrimination"]
    assert [r["categories"]["selfharm"] for r in by_id["two"]["response"]["body"]["results"]] == [True, False]
    assert by_id["empty"]["response"]["status_code"] == 400


def test_a_batch_for_a_model_that_cannot_moderate_is_refused(env: Env) -> None:
    r = env.client.post("/v1/batch/jobs", headers={"Authorization": f"Bearer {env.token}"}, json={
        "endpoint": "/v1/chat/moderations", "model": "mistral-small-latest",
        "requests": [{"body": {"input": CONVERSATION}}]})
    assert r.status_code == 400 and r.json()["param"] == "model" and "moderation" in r.json()["message"]
