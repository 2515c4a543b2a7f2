"""The eight conversation operations over HTTP in both dialects, on the fake text engine with a fake agent lookup:
shapes, the function-call round trip, a server handoff, streams (event names, order, no [DONE]), bad inputs in
each dialect's error shape, limits, and isolation between workspaces. (Real model, SDK: tests/e2e.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from conversation_support import FakeAgents, agent
from db_backends import app_database_url
from dialect_support import data, error
from mistral_gateway.config import Settings
from mistral_gateway.http.app import create_app
from mistral_gateway.protocol.conversations import MAX_INPUT_ENTRIES
from mistral_gateway.services.container import Services, build_services
from mistral_gateway.services.conversations import ConversationService
from mistral_gateway.storage.conversations import ConversationRepository
from support import fake_settings

DIALECTS = ("native", "lowcode")
MODEL = "ministral-3b-latest"
TOOLS_MODEL = "mistral-small-latest"  # ministral-3b (SmolLM2) has no function calling
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "required": ["city"],
                                                           "properties": {"city": {"type": "string"}}}}}


class Env:
    def __init__(self, client: TestClient, services: Services, tokens: dict[str, str], agents: FakeAgents) -> None:
        self.client, self.services, self.tokens, self.agents = client, services, tokens, agents

    def call(self, dialect: str, method: str, path: str, body: dict[str, Any] | None = None,
             workspace: str = "default", **params: Any) -> httpx.Response:
        token = self.tokens[workspace]
        if dialect == "native":
            return self.client.request(method, path, json=body, params=params,
                                       headers={"Authorization": f"Bearer {token}"})
        return self.client.request(method, "/mistralai" + path, json=body, params={"api_token": token, **params})

    def start(self, dialect: str, **body: Any) -> dict[str, Any]:
        return data(self.call(dialect, "POST", "/v1/conversations", {"model": MODEL, **body}), dialect)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, module_backend: str, request: pytest.FixtureRequest,
        ) -> Iterator[Env]:
    with app_database_url(module_backend, request) as url:
        yield from _env(fake_settings(tmp_path_factory.mktemp("conversations") / "data", database_url=url))


def _env(settings: Settings) -> Iterator[Env]:
    services = build_services(settings)
    agents = FakeAgents()
    services.conversations = ConversationService(ConversationRepository(services.db), agents)
    tokens = {ws: services.tokens.create(ws, workspace=ws)[0] for ws in ("default", "other")}
    ws = services.tokens.verify(tokens["default"]).workspace_id
    agents.add(ws, agent("ag_math", "Math Expert", instructions="You do maths", model=TOOLS_MODEL))
    agents.add(ws, agent("ag_triage", "Triage", handoffs=["ag_math"], model=TOOLS_MODEL))
    with TestClient(create_app(services=services)) as client:
        yield Env(client, services, tokens, agents)
    services.close()


def sse(r: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in r.text
    events = []
    for block in r.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        payload = json.loads(lines["data"])
        assert lines["event"] == payload["type"]
        events.append((lines["event"], payload))
    return events


@pytest.mark.parametrize("dialect", DIALECTS)
def test_all_eight_operations(env: Env, dialect: str) -> None:
    out = env.start(dialect, inputs="Hello there", instructions="Be brief", name="n", metadata={"run": dialect},
                    completion_args={"max_tokens": 8, "temperature": 0})
    assert out["object"] == "conversation.response" and out["conversation_id"].startswith("conv_")
    assert set(out) == {"object", "conversation_id", "outputs", "usage", "guardrails"}
    message = out["outputs"][0]
    assert message["type"] == "message.output" and message["object"] == "entry" and message["id"].startswith("msg_")
    assert message["model"] == MODEL and message["created_at"].endswith("Z") and message["content"]
    assert out["usage"]["total_tokens"] > 0
    cid = out["conversation_id"]

    more = data(env.call(dialect, "POST", f"/v1/conversations/{cid}", {"inputs": [
        {"role": "user", "content": "And again"}]}), dialect)
    assert [o["type"] for o in more["outputs"]] == ["message.output"] and more["conversation_id"] == cid

    conv = data(env.call(dialect, "GET", f"/v1/conversations/{cid}"), dialect)
    assert conv["object"] == "conversation" and conv["model"] == MODEL and conv["instructions"] == "Be brief"
    assert conv["completion_args"] == {"max_tokens": 8, "temperature": 0} and conv["metadata"] == {"run": dialect}

    listed = data(env.call(dialect, "GET", "/v1/conversations", metadata=json.dumps({"run": dialect})), dialect)
    assert [c["id"] for c in listed] == [cid]
    assert len(data(env.call(dialect, "GET", "/v1/conversations", page_size=1), dialect)) == 1

    history = data(env.call(dialect, "GET", f"/v1/conversations/{cid}/history"), dialect)
    assert history["object"] == "conversation.history" and history["conversation_id"] == cid
    entries = history["entries"]
    assert [e["type"] for e in entries] == ["message.input", "message.output"] * 2
    assert entries[0]["content"] == "Hello there" and entries[0]["role"] == "user"
    messages = data(env.call(dialect, "GET", f"/v1/conversations/{cid}/messages"), dialect)
    assert messages["object"] == "conversation.messages" and len(messages["messages"]) == 4

    branch = data(env.call(dialect, "POST", f"/v1/conversations/{cid}/restart",
                           {"from_entry_id": entries[1]["id"], "inputs": "Once more"}), dialect)
    assert branch["conversation_id"] != cid
    copied = data(env.call(dialect, "GET", f"/v1/conversations/{branch['conversation_id']}/history"), dialect)
    assert [e["type"] for e in copied["entries"]] == ["message.input", "message.output"] * 2

    assert env.call(dialect, "DELETE", f"/v1/conversations/{cid}").status_code == 204
    assert error(env.call(dialect, "GET", f"/v1/conversations/{cid}"), dialect, 404)["code"] == \
        "CONVERSATION_NOT_FOUND"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_function_call_round_trip(env: Env, dialect: str) -> None:
    out = env.start(dialect, inputs="What is the weather in Paris?", tools=[WEATHER], model=TOOLS_MODEL,
                    completion_args={"tool_choice": "any", "max_tokens": 64})
    call = out["outputs"][-1]
    assert call["type"] == "function.call" and call["name"] == "get_weather" and call["id"].startswith("fc_")
    assert len(call["tool_call_id"]) == 9 and isinstance(json.loads(call["arguments"]), dict)
    result = {"type": "function.result", "tool_call_id": call["tool_call_id"], "result": '{"sky": "clear"}'}
    done = data(env.call(dialect, "POST", f"/v1/conversations/{out['conversation_id']}",
                         {"inputs": [result], "completion_args": {"tool_choice": "none", "max_tokens": 8}}), dialect)
    assert [o["type"] for o in done["outputs"]] == ["message.output"]
    history = data(env.call(dialect, "GET", f"/v1/conversations/{out['conversation_id']}/history"), dialect)
    assert [e["type"] for e in history["entries"]] == ["message.input", "function.call", "function.result",
                                                       "message.output"]


def test_server_handoff_between_agents(env: Env) -> None:
    out = data(env.call("native", "POST", "/v1/conversations", {
        "agent_id": "ag_triage", "inputs": "2+2?", "completion_args": {"tool_choice": "any", "max_tokens": 32}}),
        "native")
    handoff, answer = out["outputs"]
    assert handoff["type"] == "agent.handoff" and handoff["id"].startswith("handoff_")
    assert (handoff["previous_agent_name"], handoff["next_agent_id"]) == ("Triage", "ag_math")
    assert answer["type"] == "message.output" and answer["agent_id"] == "ag_math"
    conv = data(env.call("native", "GET", f"/v1/conversations/{out['conversation_id']}"), "native")
    assert conv["agent_id"] == "ag_triage" and conv["agent_version"] == 0 and "model" not in conv


@pytest.mark.parametrize("dialect", DIALECTS)
def test_stream_events(env: Env, dialect: str) -> None:
    r = env.call(dialect, "POST", "/v1/conversations", {"model": MODEL, "inputs": "Say hi", "stream": True,
                                                        "completion_args": {"max_tokens": 8}})
    events = sse(r)
    kinds = [k for k, _ in events]
    assert kinds[0] == "conversation.response.started" and kinds[-1] == "conversation.response.done"
    assert set(kinds[1:-1]) == {"message.output.delta"}
    cid = events[0][1]["conversation_id"]
    deltas = [p for k, p in events if k == "message.output.delta"]
    assert len({d["id"] for d in deltas}) == 1 and all(d["output_index"] == 0 for d in deltas)
    history = data(env.call(dialect, "GET", f"/v1/conversations/{cid}/history"), dialect)
    stored = history["entries"][-1]
    assert stored["id"] == deltas[0]["id"] and stored["content"] == "".join(d["content"] for d in deltas)
    assert events[-1][1]["usage"]["completion_tokens"] > 0

    r = env.call(dialect, "POST", f"/v1/conversations/{cid}", {"inputs": "weather in Rome?", "stream": True})
    assert [k for k, _ in sse(r)][-1] == "conversation.response.done"

    r = env.call(dialect, "POST", "/v1/conversations", {"model": TOOLS_MODEL, "inputs": "weather?", "stream": True,
                                                        "tools": [WEATHER], "completion_args": {"tool_choice": "any"}})
    events = sse(r)
    assert [k for k, _ in events] == ["conversation.response.started", "function.call.delta",
                                      "conversation.response.done"]
    call = events[1][1]
    assert call["name"] == "get_weather" and call["id"].startswith("fc_") and json.loads(call["arguments"])


@pytest.mark.parametrize("dialect", DIALECTS)
def test_bad_inputs(env: Env, dialect: str) -> None:
    def refused(status: int, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return error(env.call(dialect, method, path, body), dialect, status)

    assert refused(404, "GET", "/v1/conversations/conv_nope")["code"] == "CONVERSATION_NOT_FOUND"
    assert refused(404, "POST", "/v1/conversations/conv_nope", {"inputs": "x"})["code"] == "CONVERSATION_NOT_FOUND"
    assert refused(404, "GET", "/v1/conversations/conv_nope/history")["code"] == "CONVERSATION_NOT_FOUND"
    assert refused(404, "DELETE", "/v1/conversations/conv_nope")["code"] == "CONVERSATION_NOT_FOUND"
    assert refused(400, "POST", "/v1/conversations", {"inputs": "x"})["code"] == "AGENT_OR_MODEL"
    assert refused(400, "POST", "/v1/conversations", {"inputs": "x", "model": MODEL, "agent_id": "ag_a"}
                   )["code"] == "AGENT_OR_MODEL"
    assert refused(404, "POST", "/v1/conversations", {"inputs": "x", "agent_id": "ag_unknown"}
                   )["code"] == "AGENT_NOT_FOUND"
    for tool in ({"type": "web_search"}, {"type": "code_interpreter"},
                 {"type": "document_library", "library_ids": ["lib"]}):
        err = refused(400, "POST", "/v1/conversations", {"inputs": "x", "model": MODEL, "tools": [tool]})
        assert err["code"] == "TOOL_NOT_AVAILABLE" and tool["type"] in err["message"]
    cid = env.start(dialect, inputs="hi", completion_args={"max_tokens": 4})["conversation_id"]
    err = refused(400, "POST", f"/v1/conversations/{cid}/restart", {"from_entry_id": "msg_nope", "inputs": "x"})
    assert err["code"] == "ENTRY_NOT_FOUND"
    err = refused(400, "POST", f"/v1/conversations/{cid}", {"inputs": [
        {"type": "function.result", "tool_call_id": "abcdefghi", "result": "x"}]})
    assert err["code"] == "UNKNOWN_TOOL_CALL"
    # what the model refuses is refused before a stream begins, with the chat path's status and code
    for stream in (False, True):
        err = refused(400, "POST", "/v1/conversations", {"inputs": "x", "model": MODEL, "tools": [WEATHER],
                                                         "stream": stream})
        assert err["code"] == "UNSUPPORTED_MODEL_CAPABILITY"
    # limits: entry counts, unknown entry types, page sizes, metadata filters (422 in each dialect's shape)
    too_many = [{"role": "user", "content": "x"}] * (MAX_INPUT_ENTRIES + 1)
    refused(422, "POST", "/v1/conversations", {"inputs": too_many, "model": MODEL})
    refused(422, "POST", "/v1/conversations", {"inputs": [], "model": MODEL})
    refused(422, "POST", "/v1/conversations", {"inputs": [{"type": "agent.handoff"}], "model": MODEL})
    refused(422, "POST", "/v1/conversations", {"inputs": "x", "model": MODEL, "completion_args": {"top_p": 3}})
    assert env.call(dialect, "GET", "/v1/conversations", page_size=0).status_code == 422
    assert env.call(dialect, "GET", "/v1/conversations", metadata="[1]").status_code == 422


@pytest.mark.parametrize("dialect", DIALECTS)
def test_workspaces_are_apart(env: Env, dialect: str) -> None:
    cid = env.start(dialect, inputs="mine", completion_args={"max_tokens": 4})["conversation_id"]
    for method, path, body in (("GET", f"/v1/conversations/{cid}", None),
                               ("GET", f"/v1/conversations/{cid}/history", None),
                               ("GET", f"/v1/conversations/{cid}/messages", None),
                               ("POST", f"/v1/conversations/{cid}", {"inputs": "x"}),
                               ("POST", f"/v1/conversations/{cid}/restart", {"inputs": "x", "from_entry_id": "m"}),
                               ("DELETE", f"/v1/conversations/{cid}", None)):
        assert error(env.call(dialect, method, path, body, workspace="other"), dialect, 404)
    listed = data(env.call(dialect, "GET", "/v1/conversations", workspace="other"), dialect)
    assert cid not in [c["id"] for c in listed]
    assert data(env.call(dialect, "GET", f"/v1/conversations/{cid}"), dialect)["id"] == cid


def test_usage_rows_sum_the_turns_model_calls(tmp_path: Path) -> None:
    services = build_services(fake_settings(tmp_path / "data"))
    agents = FakeAgents()
    services.conversations = ConversationService(ConversationRepository(services.db), agents)
    token, record = services.tokens.create("t")
    agents.add(record.workspace_id, agent("ag_math", "Math Expert", model=TOOLS_MODEL))
    agents.add(record.workspace_id, agent("ag_triage", "Triage", handoffs=["ag_math"], model=TOOLS_MODEL))
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(services=services)) as client:
        handoff = client.post("/v1/conversations", headers=headers, json={
            "agent_id": "ag_triage", "inputs": "2+2?", "completion_args": {"tool_choice": "any", "max_tokens": 8}})
        streamed = client.post("/v1/conversations", headers=headers, json={
            "model": MODEL, "inputs": "hi", "stream": True, "completion_args": {"max_tokens": 4}})
    records, _ = services.usage.list()
    services.close()
    usage = handoff.json()["usage"]
    done = sse(streamed)[-1][1]["usage"]
    assert usage["prompt_tokens"] > 0 and len(handoff.json()["outputs"]) == 2  # two model calls in one turn
    assert sorted((r.operation, r.status, r.prompt_tokens, r.completion_tokens) for r in records) == sorted([
        ("create_conversation", 200, usage["prompt_tokens"], usage["completion_tokens"]),
        ("create_conversation", 200, done["prompt_tokens"], done["completion_tokens"])])
