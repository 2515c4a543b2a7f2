"""Fine-tuned models over HTTP in both dialects on the fake engines: served by chat, FIM, classifications, agents,
conversations and batch under their ``ft:`` ids in their own workspace only; update, archive (inference refused,
hidden from the default listing), unarchive, and delete (files gone, base models refused)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from db_backends import app_database_url
from dialect_support import data, error
from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.http.app import create_app
from mistral_gateway.services.container import Services, build_services
from mistral_gateway.storage.records import FineTunedModelRecord

DIALECTS = ("native", "lowcode")
HI = [{"role": "user", "content": "hi"}]
JOB = "0b3f5c1e-0000-4000-8000-000000000001"


@dataclass
class Api:
    client: TestClient
    dialect: str
    token: str

    def __call__(self, method: str, path: str, *, params: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        if self.dialect == "native":
            return self.client.request(method, "/v1" + path, params=params,
                                       headers={"Authorization": f"Bearer {self.token}"}, **kw)
        return self.client.request(method, "/mistralai/v1" + path, params={**(params or {}), "api_token": self.token},
                                   **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        return data(self(method, path, **kw), self.dialect)

    def fails(self, status: int, method: str, path: str, **kw: Any) -> dict[str, Any]:
        return error(self(method, path, **kw), self.dialect, status)

    def chat(self, model: str) -> httpx.Response:
        return self("POST", "/chat/completions", json={"model": model, "messages": HI, "max_tokens": 8})


@dataclass
class Env:
    client: TestClient
    services: Services
    tokens: dict[str, str]  # workspace name -> token
    workspace_ids: dict[str, str]

    def api(self, dialect: str, workspace: str = "a") -> Api:
        return Api(self.client, dialect, self.tokens[workspace])

    def add(self, job_type: str = "completion", workspace: str = "a") -> str:
        """A fine-tuned model of ``workspace`` with its file under the data dir (the fakes ignore its content)."""
        classifier = job_type == "classifier"
        model_id = f"ft:{'classifier' if classifier else 'fake-chat'}:{secrets.token_hex(4)}:20250101:" \
                   f"{secrets.token_hex(4)}"
        artifact = f"fine_tuning/{secrets.token_hex(4)}/{'head.safetensors' if classifier else 'model.gguf'}"
        self.path(artifact).parent.mkdir(parents=True)
        self.path(artifact).write_bytes(b"weights")
        self.services.fine_tuned.add(FineTunedModelRecord(
            id=model_id, workspace_id=self.workspace_ids[workspace],
            root="mistral-embed" if classifier else "mistral-small-latest", job_id=JOB,
            name="tuned", description="a fine-tune", archived=False, capabilities=("completion_chat",),
            max_context_length=2048, created_at=1735689600, job_type=job_type, artifact=artifact))
        return model_id

    def path(self, artifact: str) -> Path:
        return self.services.settings.data_dir / artifact

    def artifact(self, model_id: str) -> Path:
        record = self.services.fine_tuned.get(self.workspace_ids["a"], model_id)
        assert record is not None and record.artifact is not None
        return self.path(record.artifact)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, module_backend: str, request: pytest.FixtureRequest,
        ) -> Iterator[Env]:
    with app_database_url(module_backend, request) as url:
        yield from _env(tmp_path_factory.mktemp("ftserve") / "data", url)


def _env(data_dir: Path, database_url: str | None) -> Iterator[Env]:
    settings = Settings(data_dir=data_dir, database_url=database_url, bootstrap_dev_token=False, models=[
        ModelEntry(id="fake-chat", aliases=["mistral-small-latest"], engine="fake", max_context_length=2048,
                   capabilities=["completion_chat", "completion_fim", "function_calling"],
                   fim_template="<pre>{prompt}<suf>{suffix}<mid>"),
        ModelEntry(id="fake-embed", aliases=["mistral-embed"], engine="fake", capabilities=[])])
    services = build_services(settings)
    created = {ws: services.tokens.create(ws, workspace=ws) for ws in ("a", "b")}
    tokens = {ws: token for ws, (token, _) in created.items()}
    ids = {ws: record.workspace_id for ws, (_, record) in created.items()}
    with TestClient(create_app(services=services)) as client:
        yield Env(client, services, tokens, ids)
    services.close()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_chat_and_fim_serve_a_fine_tuned_model_of_the_workspace(env: Env, dialect: str) -> None:
    model = env.add()
    api = env.api(dialect)
    out = data(api.chat(model), dialect)
    assert out["model"] == model and out["choices"][0]["message"]["content"]
    fim = api.ok("POST", "/fim/completions", json={"model": model, "prompt": "def f(", "suffix": "):",
                                                   "max_tokens": 4})
    assert fim["model"] == model
    r = api("POST", "/chat/completions", json={"model": model, "messages": HI, "max_tokens": 4, "stream": True})
    assert r.status_code == 200 and "data: [DONE]" in r.text
    assert model in env.services.engines.loaded()  # an engine of its own, keyed by its id
    # another workspace's fine-tuned model is not found, never served
    err = env.api(dialect, "b").fails(404, "POST", "/chat/completions", json={"model": model, "messages": HI})
    assert err["code"] == "MODEL_NOT_FOUND"
    env.api(dialect, "b").fails(404, "GET", f"/models/{model}")
    # it cannot embed: a fine-tuned model is a chat (or classifier) model
    assert api.fails(400, "POST", "/embeddings", json={"model": model, "input": ["x"]})["code"] == \
        "UNSUPPORTED_MODEL_CAPABILITY"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_cards_in_the_listing(env: Env, dialect: str) -> None:
    model, classifier = env.add(), env.add("classifier")
    cards = {c["id"]: c for c in env.api(dialect).ok("GET", "/models")["data"]}
    card = cards[model]
    assert (card["type"], card["job"], card["root"], card["archived"]) == ("fine-tuned", JOB,
                                                                           "mistral-small-latest", False)
    assert card["capabilities"]["completion_chat"] and card["capabilities"]["completion_fim"]
    assert cards[classifier]["capabilities"]["classification"] and not cards[classifier]["capabilities"][
        "completion_chat"]
    assert model not in {c["id"] for c in env.api(dialect, "b").ok("GET", "/models")["data"]}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_update(env: Env, dialect: str) -> None:
    model, api = env.add(), env.api(dialect)
    out = api.ok("PATCH", f"/fine_tuning/models/{model}", json={"name": "renamed"})
    assert (out["id"], out["object"], out["name"], out["description"], out["model_type"]) == (
        model, "model", "renamed", "a fine-tune", "completion")
    assert out["capabilities"] == {"completion_chat": True, "completion_fim": True, "function_calling": True,
                                   "fine_tuning": False, "classification": False}
    out = api.ok("PATCH", f"/fine_tuning/models/{model}", json={"description": None})
    assert (out["name"], out["description"]) == ("renamed", None)
    assert api.ok("GET", f"/models/{model}")["name"] == "renamed"
    assert env.api(dialect, "b").fails(404, "PATCH", f"/fine_tuning/models/{model}",
                                       json={"name": "x"})["code"] == "MODEL_NOT_FOUND"
    assert api.fails(403, "PATCH", "/fine_tuning/models/mistral-small-latest",
                     json={"name": "x"})["code"] == "BASE_MODEL_NOT_MODIFIABLE"
    api.fails(422, "PATCH", f"/fine_tuning/models/{model}", json={"name": "x" * 256})
    classifier = env.add("classifier")
    out = api.ok("PATCH", f"/fine_tuning/models/{classifier}", json={"name": "sentiment"})
    assert out["model_type"] == "classifier" and out["classifier_targets"] == []  # the fakes' file is no head


@pytest.mark.parametrize("dialect", DIALECTS)
def test_archive_refuses_inference_until_unarchived(env: Env, dialect: str) -> None:
    model, api = env.add(), env.api(dialect)
    assert data(api.chat(model), dialect)["model"] == model
    assert api.ok("POST", f"/fine_tuning/models/{model}/archive") == {"id": model, "object": "model",
                                                                       "archived": True}
    err = error(api.chat(model), dialect, 400)
    assert err["code"] == "MODEL_ARCHIVED"
    assert model in err["message"] and f"DELETE /v1/fine_tuning/models/{model}/archive" in err["message"]
    assert model not in env.services.engines.loaded()  # its weights were released
    assert model not in {c["id"] for c in api.ok("GET", "/models")["data"]}
    assert [c["id"] for c in api.ok("GET", "/models", params={"model": model})["data"]] == [model]
    assert api.ok("GET", f"/models/{model}")["archived"] is True
    assert api.fails(400, "POST", "/agents", json={"model": model, "name": "x"})["code"] == "MODEL_ARCHIVED"
    env.api(dialect, "b").fails(404, "DELETE", f"/fine_tuning/models/{model}/archive")
    assert api.ok("DELETE", f"/fine_tuning/models/{model}/archive") == {"id": model, "object": "model",
                                                                         "archived": False}
    assert data(api.chat(model), dialect)["model"] == model
    assert api.ok("GET", f"/models/{model}")["archived"] is False
    assert model in {c["id"] for c in api.ok("GET", "/models")["data"]}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_delete_removes_the_model_and_its_file(env: Env, dialect: str) -> None:
    model, api = env.add(), env.api(dialect)
    assert data(api.chat(model), dialect)["model"] == model
    artifact = env.artifact(model)
    env.api(dialect, "b").fails(404, "DELETE", f"/models/{model}")
    assert artifact.exists()
    assert api.ok("DELETE", f"/models/{model}") == {"id": model, "object": "model", "deleted": True}
    assert not artifact.exists()
    assert model not in env.services.engines.loaded()
    assert error(api.chat(model), dialect, 404)["code"] == "MODEL_NOT_FOUND"
    api.fails(404, "GET", f"/models/{model}")
    api.fails(404, "POST", f"/fine_tuning/models/{model}/archive")
    assert api.fails(403, "DELETE", "/models/mistral-small-latest")["code"] == "BASE_MODEL_NOT_DELETABLE"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_classifications_with_a_fine_tuned_classifier(env: Env, dialect: str) -> None:
    model, api = env.add("classifier"), env.api(dialect)
    out = api.ok("POST", "/classifications", json={"model": model, "input": ["good", "bad"]})
    assert out["model"] == model and len(out["results"]) == 2
    assert all(set(result) and all("scores" in target for target in result.values()) for result in out["results"])
    out = api.ok("POST", "/chat/classifications", json={"model": model, "input": [{"messages": HI}]})
    assert out["model"] == model and len(out["results"]) == 1
    assert api.fails(400, "POST", "/chat/completions", json={"model": model, "messages": HI})["code"] == \
        "UNSUPPORTED_MODEL_CAPABILITY"
    env.api(dialect, "b").fails(404, "POST", "/classifications", json={"model": model, "input": ["x"]})


@pytest.mark.parametrize("dialect", DIALECTS)
def test_agents_conversations_and_batches_use_fine_tuned_models(env: Env, dialect: str) -> None:
    model, api = env.add(), env.api(dialect)
    agent = api.ok("POST", "/agents", json={"model": model, "name": "tuned helper"})
    assert agent["model"] == model
    out = api.ok("POST", "/agents/completions", json={"agent_id": agent["id"], "messages": HI, "max_tokens": 4})
    assert out["choices"][0]["message"]["content"]
    conversation = api.ok("POST", "/conversations", json={"model": model, "inputs": "hi",
                                                          "completion_args": {"max_tokens": 4}})
    assert conversation["outputs"]
    job = api.ok("POST", "/batch/jobs", json={"endpoint": "/v1/chat/completions", "model": model,
                                              "requests": [{"body": {"messages": HI, "max_tokens": 4}}]})
    assert job["model"] == model
    other = env.api(dialect, "b")
    assert other.fails(400, "POST", "/agents", json={"model": model, "name": "x"})["code"] == "MODEL_NOT_FOUND"
    other.fails(400, "POST", "/batch/jobs", json={"endpoint": "/v1/chat/completions", "model": model,
                                                  "requests": [{"body": {"messages": HI}}]})
