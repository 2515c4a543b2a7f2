"""The document_library tool over HTTP in both dialects, on the real services (agents, conversations, libraries,
the local index, the ingestion job) with fake chat and embedding engines: a library with a processed text document,
an agent with the tool, a conversation's entries and history, what the model was given, a later turn, a restart, a
streamed turn's event order, an empty library, isolation (another workspace's library id is refused), and a server
restart (the stored executions are what later turns show the model)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from db_backends import app_database_url
from dialect_support import data, error
from mistral_gateway.engines.fake import FakeTextEngine
from mistral_gateway.http.app import create_app
from mistral_gateway.services.container import Services, build_services
from support import fake_settings

DIALECTS = ("native", "lowcode")
MODEL = "mistral-small-latest"
FACT = "The Zorblat bridge of Vennmoor opened in 1843 and is painted teal."


class Env:
    def __init__(self, client: TestClient, services: Services, tokens: dict[str, str]) -> None:
        self.client, self.services, self.tokens = client, services, tokens

    def call(self, dialect: str, method: str, path: str, workspace: str = "a", **kw: Any) -> httpx.Response:
        token = self.tokens[workspace]
        if dialect == "native":
            return self.client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)
        return self.client.request(method, "/mistralai" + path, params={"api_token": token}, **kw)

    def ok(self, dialect: str, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        return data(self.call(dialect, method, path, **kw), dialect, status)

    def library(self, dialect: str, workspace: str = "a", text: str | None = None) -> str:
        """A new library of the workspace, with one processed document holding ``text`` when given."""
        library_id = data(self.call(dialect, "POST", "/v1/libraries", workspace, json={"name": "docs"}), dialect,
                          201)["id"]
        if text is not None:
            path = f"/v1/libraries/{library_id}/documents"
            doc = data(self.call(dialect, "POST", path, workspace, files={"file": ("bridges.md", text.encode())}),
                       dialect, 201)
            for _ in range(500):
                status = self.ok(dialect, "GET", f"{path}/{doc['id']}", workspace=workspace)["processing_status"]
                if status != "Running":
                    break
                time.sleep(0.02)
            assert status == "Completed"
        return library_id  # type: ignore[no-any-return]

    def agent(self, dialect: str, *library_ids: str) -> dict[str, Any]:
        return self.ok(dialect, "POST", "/v1/agents", json={  # type: ignore[no-any-return]
            "model": MODEL, "name": "librarian", "instructions": "Answer from the documents.",
            "completion_args": {"max_tokens": 8},
            "tools": [{"type": "document_library", "library_ids": list(library_ids)}]})

    def prompts(self) -> list[str]:
        entry = self.services.models.catalog.resolve(MODEL)
        assert entry is not None
        engine = self.services.engines._engines[entry.id]
        assert isinstance(engine, FakeTextEngine)
        return engine.prompts


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, module_backend: str, request: pytest.FixtureRequest,
        ) -> Iterator[Env]:
    data_dir = tmp_path_factory.mktemp("library-tool") / "data"
    with app_database_url(module_backend, request) as url:
        services = build_services(fake_settings(data_dir, database_url=url))
        tokens = {ws: services.tokens.create(ws, workspace=ws)[0] for ws in ("a", "b")}
        with TestClient(create_app(services=services)) as client:
            yield Env(client, services, tokens)
        services.close()


def sse(r: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    assert r.status_code == 200, r.text
    blocks = [dict(line.split(": ", 1) for line in b.split("\n")) for b in r.text.strip().split("\n\n")]
    return [(b["event"], json.loads(b["data"])) for b in blocks]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_conversation_with_a_library_agent(env: Env, dialect: str) -> None:
    library_id = env.library(dialect, text=f"# Bridges\n\n{FACT}\n")
    agent = env.agent(dialect, library_id)
    assert agent["tools"] == [{"type": "document_library", "library_ids": [library_id]}]
    out = env.ok(dialect, "POST", "/v1/conversations", json={"agent_id": agent["id"],
                                                             "inputs": "When did the Zorblat bridge open?"})
    assert [o["type"] for o in out["outputs"]] == ["tool.execution", "message.output"]
    execution, answer = out["outputs"]
    assert out["usage"]["connectors"] == {"document_library": 1} and out["usage"]["prompt_tokens"] > 0
    assert execution["name"] == "document_library" and execution["agent_id"] == agent["id"]
    assert json.loads(execution["arguments"]) == {"query": "When did the Zorblat bridge open?",
                                                  "library_ids": [library_id]}
    [hit] = execution["info"]["results"]
    assert (hit["document_name"], hit["library_id"], hit["chunk_index"]) == ("bridges.md", library_id, 0)
    assert FACT in hit["text"] and isinstance(hit["score"], float)
    prompt = env.prompts()[-1]  # the model read the passage as a numbered tool result, after the question
    passage = prompt.index("[1] from 'bridges.md' (part 1):\n# Bridges")
    assert prompt.index("When did the Zorblat bridge open?") < passage
    text, ref = answer["content"]
    assert text["type"] == "text" and text["text"]
    assert ref == {"type": "tool_reference", "tool": "document_library", "title": "bridges.md",
                   "description": f"# Bridges {FACT}"}
    cid = out["conversation_id"]
    history = env.ok(dialect, "GET", f"/v1/conversations/{cid}/history")["entries"]
    assert [e["type"] for e in history] == ["message.input", "tool.execution", "message.output"]
    assert history[1] == execution and history[2]["content"] == answer["content"]
    messages = env.ok(dialect, "GET", f"/v1/conversations/{cid}/messages")["messages"]
    assert [m["type"] for m in messages] == ["message.input", "message.output"]

    # a later turn: the first passage is shown again from the history, and the new question searched
    more = env.ok(dialect, "POST", f"/v1/conversations/{cid}", json={"inputs": "What colour is it?"})
    assert [o["type"] for o in more["outputs"]] == ["tool.execution", "message.output"]
    assert json.loads(more["outputs"][0]["arguments"])["query"] == "What colour is it?"
    assert env.prompts()[-1].count(FACT) == 2
    # a restart from the first answer keeps its execution
    again = env.ok(dialect, "POST", f"/v1/conversations/{cid}/restart",
                   json={"from_entry_id": answer["id"], "inputs": "And its length?"})
    entries = env.ok(dialect, "GET", f"/v1/conversations/{again['conversation_id']}/history")["entries"]
    assert [e["type"] for e in entries] == ["message.input", "tool.execution", "message.output", "message.input",
                                            "tool.execution", "message.output"]

    # streamed: the execution's two events before the answer's deltas, its references last
    events = sse(env.call(dialect, "POST", "/v1/conversations", json={
        "agent_id": agent["id"], "inputs": "When did it open?", "stream": True}))
    kinds = [k for k, _ in events]
    assert kinds[:3] == ["conversation.response.started", "tool.execution.started", "tool.execution.done"]
    assert kinds[-1] == "conversation.response.done" and set(kinds[3:-1]) == {"message.output.delta"}
    assert events[-1][1]["usage"]["connectors"] == {"document_library": 1}
    started, done = events[1][1], events[2][1]
    assert started["id"] == done["id"] and started["output_index"] == done["output_index"] == 0
    assert json.loads(started["arguments"])["library_ids"] == [library_id]
    assert done["info"]["results"][0]["document_name"] == "bridges.md"
    deltas = [e for k, e in events if k == "message.output.delta"]
    assert {d["output_index"] for d in deltas} == {1}
    assert deltas[-1]["content"] == ref and deltas[-1]["content_index"] == 1
    assert all(isinstance(d["content"], str) and d["content_index"] == 0 for d in deltas[:-1])


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_empty_library_still_records_the_execution(env: Env, dialect: str) -> None:
    agent = env.agent(dialect, env.library(dialect))
    out = env.ok(dialect, "POST", "/v1/conversations", json={"agent_id": agent["id"], "inputs": "Anything?"})
    assert [o["type"] for o in out["outputs"]] == ["tool.execution", "message.output"]
    assert out["outputs"][0]["info"] == {"results": []} and isinstance(out["outputs"][1]["content"], str)
    assert "The document library has nothing relevant" in env.prompts()[-1]
    # a model conversation may name libraries too; tool_choice none skips the search
    library_id = env.library(dialect, text=FACT)
    tools = [{"type": "document_library", "library_ids": [library_id]}]
    out = env.ok(dialect, "POST", "/v1/conversations", json={"model": MODEL, "inputs": "When?", "tools": tools,
                                                             "completion_args": {"max_tokens": 4}})
    assert [o["type"] for o in out["outputs"]] == ["tool.execution", "message.output"]
    out = env.ok(dialect, "POST", "/v1/conversations", json={
        "model": MODEL, "inputs": "When?", "tools": tools, "completion_args": {"max_tokens": 4,
                                                                               "tool_choice": "none"}})
    assert [o["type"] for o in out["outputs"]] == ["message.output"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_library_ids_are_checked_per_workspace(env: Env, dialect: str) -> None:
    theirs = env.library(dialect, workspace="b", text=FACT)
    tools = [{"type": "document_library", "library_ids": [theirs]}]
    for body in ({"model": MODEL, "name": "x", "tools": tools},
                 {"model": MODEL, "name": "x", "tools": [{"type": "document_library", "library_ids": ["nope"]}]}):
        err = error(env.call(dialect, "POST", "/v1/agents", json=body), dialect, 400)
        assert err["code"] == "LIBRARY_NOT_FOUND" and body["tools"][0]["library_ids"][0] in err["message"]
    mine = env.agent(dialect, env.library(dialect))
    err = error(env.call(dialect, "PATCH", f"/v1/agents/{mine['id']}", json={"tools": tools}), dialect, 400)
    assert err["code"] == "LIBRARY_NOT_FOUND"
    err = error(env.call(dialect, "POST", "/v1/conversations", json={"model": MODEL, "inputs": "x", "tools": tools}),
                dialect, 400)
    assert err["code"] == "LIBRARY_NOT_FOUND" and theirs in err["message"]
    # another workspace cannot run the agent; a library deleted after the agent was made is searched no more
    err = error(env.call(dialect, "POST", "/v1/conversations", json={"agent_id": mine["id"], "inputs": "x"},
                         workspace="b"), dialect, 404)
    assert err["code"] == "AGENT_NOT_FOUND"
    library_id = env.library(dialect, text=FACT)
    agent = env.agent(dialect, library_id)
    env.ok(dialect, "DELETE", f"/v1/libraries/{library_id}")
    out = env.ok(dialect, "POST", "/v1/conversations", json={"agent_id": agent["id"], "inputs": "When?"})
    assert out["outputs"][0]["info"] == {"results": []}


def test_the_executions_outlive_a_restart(tmp_path: Path, database_backend: str,
                                          request: pytest.FixtureRequest) -> None:
    with app_database_url(database_backend, request) as url:  # the same database across the restart
        restart_and_continue(tmp_path, url)


def restart_and_continue(tmp_path: Path, url: str | None) -> None:
    def served() -> Any:
        services = build_services(fake_settings(tmp_path / "data", database_url=url))
        token = services.tokens.create("a", workspace="a")[0]
        return services, TestClient(create_app(services=services)), {"a": token}

    services, client, tokens = served()
    with client:
        env = Env(client, services, tokens)
        agent = env.agent("native", env.library("native", text=FACT))
        cid = env.ok("native", "POST", "/v1/conversations", json={"agent_id": agent["id"],
                                                                   "inputs": "When?"})["conversation_id"]
    services.close()
    services, client, tokens = served()  # the same data dir: entries, libraries and the index read again
    with client:
        env = Env(client, services, tokens)
        out = env.ok("native", "POST", f"/v1/conversations/{cid}", json={"inputs": "And its colour?"})
        assert [o["type"] for o in out["outputs"]] == ["tool.execution", "message.output"]
        assert out["outputs"][0]["info"]["results"][0]["text"] == FACT  # the index survived
        assert env.prompts()[-1].count(FACT) == 2  # the first execution, rendered from the stored entry
        entries = env.ok("native", "GET", f"/v1/conversations/{cid}/history")["entries"]
        assert [e["type"] for e in entries] == ["message.input", "tool.execution", "message.output"] * 2
    services.close()
