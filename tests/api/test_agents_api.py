"""Agents over HTTP in both dialects on the fake engine: CRUD, versions (query or body), list filters and pages,
isolation between workspaces, agents completions (JSON and SSE), and bad inputs in each dialect's error shape."""

from __future__ import annotations

import json
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
from mistral_gateway.services.container import build_services

DIALECTS = ("native", "lowcode")
TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}
HI = [{"role": "user", "content": "hi"}]


@dataclass
class Api:
    client: TestClient
    dialect: str
    token: str

    def __call__(self, method: str, path: str, *, params: Any = None, **kw: Any) -> httpx.Response:
        if self.dialect == "native":
            return self.client.request(method, "/v1" + path, params=params, headers={
                "Authorization": f"Bearer {self.token}"}, **kw)
        pairs = params.items() if isinstance(params, dict) else params or []
        query = [(k, x) for k, v in pairs for x in (v if isinstance(v, list) else [v])]
        return self.client.request(method, "/mistralai/v1" + path, params=[*query, ("api_token", self.token)], **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        return data(self(method, path, **kw), self.dialect)

    def fails(self, status: int, method: str, path: str, **kw: Any) -> dict[str, Any]:
        return error(self(method, path, **kw), self.dialect, status)

    def create(self, **fields: Any) -> dict[str, Any]:
        return self.ok("POST", "/agents", json={"model": "mistral-small-latest", "name": "helper", **fields})  # type: ignore[no-any-return]


@dataclass
class Env:
    client: TestClient
    tokens: dict[str, str]  # workspace -> token

    def api(self, dialect: str, workspace: str = "a") -> Api:
        return Api(self.client, dialect, self.tokens[workspace])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, module_backend: str, request: pytest.FixtureRequest,
        ) -> Iterator[Env]:
    with app_database_url(module_backend, request) as url:
        yield from _env(tmp_path_factory.mktemp("agents") / "data", url)


def _env(data_dir: Path, database_url: str | None) -> Iterator[Env]:
    settings = Settings(data_dir=data_dir, database_url=database_url, bootstrap_dev_token=False,
                        max_agents_per_workspace=50, models=[
                            ModelEntry(id="fake-chat", aliases=["mistral-small-latest"], engine="fake",
                                       capabilities=["completion_chat", "function_calling"]),
                            ModelEntry(id="fake-embed", aliases=["mistral-embed"], engine="fake", capabilities=[])])
    services = build_services(settings)
    tokens = {ws: services.tokens.create(ws, workspace=ws)[0] for ws in ("a", "b", "c", "full")}
    with TestClient(create_app(services=services)) as client:
        yield Env(client, tokens)
    services.close()


def message(err: dict[str, Any]) -> str:
    return err.get("message") or json.dumps(err["detail"])


@pytest.mark.parametrize("dialect", DIALECTS)
def test_crud_and_versions(env: Env, dialect: str) -> None:
    api = env.api(dialect)
    agent = api.create(instructions="Be brief.", tools=[TOOL], metadata={"team": "x"}, version_message="first")
    agent_id = agent["id"]
    assert (agent["object"], agent["version"], agent["versions"], agent["source"]) == ("agent", 0, [0], "api")
    assert agent["completion_args"]["tool_choice"] == "auto" and agent["deployment_chat"] is False
    assert api.ok("GET", f"/agents/{agent_id}") == agent
    one = api.ok("PATCH", f"/agents/{agent_id}", json={"instructions": "v1", "completion_args": {"top_p": 0.5}})
    assert (one["version"], one["versions"], one["instructions"], one["version_message"]) == (1, [0, 1], "v1", None)
    assert one["completion_args"]["top_p"] == 0.5 and one["tools"] == agent["tools"]
    two = api.ok("PATCH", f"/agents/{agent_id}", json={"name": "two"})
    assert (two["version"], two["versions"], two["name"]) == (2, [0, 1, 2], "two")
    # the version switch: ?version= (spec, SDK) or {"version": N} (the docs' curl)
    back = api.ok("PATCH", f"/agents/{agent_id}/version", params={"version": 0})
    assert (back["version"], back["versions"], back["instructions"], back["name"]) == (0, [0, 1, 2], "Be brief.",
                                                                                       "helper")
    again = api.ok("PATCH", f"/agents/{agent_id}/version", json={"version": 1})
    assert (again["version"], again["instructions"]) == (1, "v1")
    assert api.ok("GET", f"/agents/{agent_id}")["version"] == 1
    assert api.ok("GET", f"/agents/{agent_id}", params={"agent_version": 2})["name"] == "two"
    assert api.ok("GET", f"/agents/{agent_id}", params={"agent_version": "0"})["version_message"] == "first"
    r = api("DELETE", f"/agents/{agent_id}")
    assert r.status_code == 204 and r.content == b""
    for method, path, kw in (("GET", f"/agents/{agent_id}", {}), ("PATCH", f"/agents/{agent_id}", {"json": {}}),
                             ("DELETE", f"/agents/{agent_id}", {}),
                             ("PATCH", f"/agents/{agent_id}/version", {"params": {"version": 0}})):
        assert api.fails(404, method, path, **kw)["code"] == "AGENT_NOT_FOUND"
    assert agent_id not in {a["id"] for a in api.ok("GET", "/agents", params={"page_size": 1000})}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_version_errors(env: Env, dialect: str) -> None:
    api = env.api(dialect)
    agent_id = api.create()["id"]
    for params in ({"agent_version": 3}, {"agent_version": "prod"}, {"agent_version": "-1"}):
        err = api.fails(404, "GET", f"/agents/{agent_id}", params=params)
        assert err["code"] == "AGENT_VERSION_NOT_FOUND"
    assert api.fails(404, "PATCH", f"/agents/{agent_id}/version", params={"version": 7})["code"] == \
        "AGENT_VERSION_NOT_FOUND"
    assert api.fails(404, "PATCH", f"/agents/{agent_id}/version", json={"version": 7})["code"] == \
        "AGENT_VERSION_NOT_FOUND"
    assert "version" in message(api.fails(422, "PATCH", f"/agents/{agent_id}/version"))  # neither given
    for bad in ({"params": {"version": "x"}}, {"params": {"version": -1}}, {"json": {"version": "x"}},
                {"json": {"other": 1}}):
        api.fails(422, "PATCH", f"/agents/{agent_id}/version", **bad)
    assert api.fails(400, "PATCH", f"/agents/{agent_id}/version", content=b"{nope")["code"] == "MALFORMED_JSON"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_bad_inputs(env: Env, dialect: str) -> None:
    api = env.api(dialect, "c")
    assert api.fails(404, "GET", "/agents/ag_0000")["code"] == "AGENT_NOT_FOUND"
    err = api.fails(400, "POST", "/agents", json={"model": "mistral-small-latest", "name": "x",
                                                  "tools": [{"type": "web_search"}]})
    assert err["code"] == "TOOL_NOT_AVAILABLE" and "web_search" in err["message"]
    err = api.fails(400, "POST", "/agents", json={"model": "mistral-small-latest", "name": "x",
                                                  "handoffs": ["ag_missing"]})
    assert err["code"] == "HANDOFF_AGENT_NOT_FOUND" and "ag_missing" in err["message"]
    assert api.fails(400, "POST", "/agents", json={"model": "nope", "name": "x"})["code"] == "MODEL_NOT_FOUND"
    assert api.fails(400, "POST", "/agents", json={"model": "mistral-embed", "name": "x"})["code"] == \
        "UNSUPPORTED_MODEL_CAPABILITY"
    base = {"model": "mistral-small-latest", "name": "x"}
    for bad in ({"name": ""}, {"name": "n" * 513}, {"version_message": "v" * 501}, {"handoffs": []},
                {"handoffs": ["ag"] * 33}, {"metadata": {f"k{i}": i for i in range(65)}}, {"metadata": {"": 1}},
                {"metadata": {"k": "v" * 20_000}}, {"tools": [TOOL] * 129}, {"completion_args": {"temperature": 3}},
                {"instructions": "i" * 100_001}, {"tools": [{"type": "nonsense"}]}):
        api.fails(422, "POST", "/agents", json={**base, **bad})
    api.fails(422, "POST", "/agents", json={"name": "no model"})
    assert api.ok("GET", "/agents") == []  # nothing refused was stored
    for params in ({"page_size": 0}, {"page_size": 1001}, {"page": -1}, {"sources": "nowhere"}):
        api.fails(422, "GET", "/agents", params=params)
    for bad in ("{", "[1]", "3"):
        assert api.fails(400, "GET", "/agents", params={"metadata": bad})["code"] == "INVALID_METADATA_FILTER"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_list_filters_and_pages(env: Env, dialect: str) -> None:
    api = env.api(dialect, "b")
    ids = [api.create(name=f"{dialect}-agent-{i}", metadata={"i": i, "even": i % 2 == 0})["id"] for i in range(5)]
    api.ok("PATCH", f"/agents/{ids[3]}", json={"deployment_chat": True})
    mine = {"search": f"{dialect}-agent"}

    def listed(**params: Any) -> list[str]:
        return [a["id"] for a in api.ok("GET", "/agents", params={**mine, **params})]

    assert listed() == ids  # creation order
    assert listed(page_size=2) == ids[:2] and listed(page_size=2, page=2) == ids[4:] and listed(page=9) == []
    assert listed(metadata=json.dumps({"even": True})) == [ids[0], ids[2], ids[4]]
    assert listed(metadata=json.dumps({"even": True}), page_size=2, page=1) == [ids[4]]
    assert listed(metadata=json.dumps({"i": 1, "even": False})) == [ids[1]]
    assert listed(deployment_chat="true") == [ids[3]] and len(listed(deployment_chat="false")) == 4
    assert listed(name=f"{dialect}-agent-2") == [ids[2]] and listed(id=ids[1]) == [ids[1]]
    assert [a["id"] for a in api.ok("GET", "/agents", params={"search": ids[4][5:20]})] == [ids[4]]
    assert listed(sources=["api", "playground"]) == ids and listed(sources="playground") == []
    body = api.ok("GET", "/agents", params=[("search", f"{dialect}-agent"), ("sources", "agent_builder_v1"),
                                              ("sources", "api")])
    assert [a["id"] for a in body] == ids  # repeated parameters


def test_workspaces_do_not_see_each_other(env: Env) -> None:
    a, b = env.api("native", "a"), env.api("lowcode", "b")
    theirs = b.create(name="theirs")["id"]
    mine = a.create(name="mine")["id"]
    assert theirs not in {x["id"] for x in a.ok("GET", "/agents", params={"page_size": 1000})}
    for method, path, kw in (("GET", f"/agents/{theirs}", {}), ("PATCH", f"/agents/{theirs}", {"json": {}}),
                             ("PATCH", f"/agents/{theirs}/version", {"params": {"version": 0}}),
                             ("DELETE", f"/agents/{theirs}", {}),
                             ("POST", "/agents/completions", {"json": {"agent_id": theirs, "messages": HI}})):
        assert a.fails(404, method, path, **kw)["code"] == "AGENT_NOT_FOUND"
    err = a.fails(400, "POST", "/agents", json={"model": "mistral-small-latest", "name": "x", "handoffs": [theirs]})
    assert err["code"] == "HANDOFF_AGENT_NOT_FOUND"
    assert b.ok("GET", f"/agents/{theirs}")["name"] == "theirs"
    assert a.ok("GET", f"/agents/{mine}")["name"] == "mine"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_agent_completions(env: Env, dialect: str) -> None:
    api = env.api(dialect)
    agent = api.create(instructions="Answer briefly.", tools=[TOOL], completion_args={"max_tokens": 3})
    body = {"agent_id": agent["id"], "messages": HI}
    out = api.ok("POST", "/agents/completions", json=body)
    assert out["object"] == "chat.completion" and out["model"] == "mistral-small-latest"
    assert out["usage"]["completion_tokens"] <= 3 and out["choices"][0]["message"]["role"] == "assistant"
    assert api.ok("POST", "/agents/completions", json={**body, "max_tokens": 1})["usage"]["completion_tokens"] == 1
    r = api("POST", "/agents/completions", json={**body, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in r.text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant" and chunks[-1]["usage"]["completion_tokens"] <= 3
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    # refused: an unknown agent, a tool that does not run here, an invalid merged request
    assert api.fails(404, "POST", "/agents/completions", json={"agent_id": "ag_nope", "messages": HI})["code"] == \
        "AGENT_NOT_FOUND"
    # a document_library agent runs in conversations only (the completion has no place for its references)
    library_id = data(api("POST", "/libraries", json={"name": "docs"}), dialect, 201)["id"]
    library = api.create(tools=[{"type": "document_library", "library_ids": [library_id]}])
    err = api.fails(400, "POST", "/agents/completions", json={"agent_id": library["id"], "messages": HI})
    assert err["code"] == "TOOL_NOT_AVAILABLE" and "document_library" in err["message"]
    assert "/v1/conversations" in err["message"]
    api.fails(422, "POST", "/agents/completions", json={"agent_id": agent["id"], "messages": [
        {"role": "assistant", "content": "a", "prefix": True}, {"role": "user", "content": "b"}]})
    for bad in ({"messages": []}, {"agent_id": ""}, {"max_tokens": -1}, {"n": 17}, {"tools": [TOOL] * 129}):
        api.fails(422, "POST", "/agents/completions", json={**body, **bad})


def test_the_per_workspace_limit(env: Env) -> None:
    native, lowcode = env.api("native", "full"), env.api("lowcode", "full")
    first = [native.create()["id"] for _ in range(50)]  # max_agents_per_workspace=50 here
    for api in (native, lowcode):
        err = api.fails(400, "POST", "/agents", json={"model": "mistral-small-latest", "name": "one more"})
        assert err["code"] == "AGENT_LIMIT_REACHED" and "50" in err["message"]
    assert lowcode("DELETE", f"/agents/{first[0]}").status_code == 204
    lowcode.create()  # a deleted agent no longer counts
