"""services.agents: validation, versions, snapshots for conversations, the agents-completion merge, and that merge
run through the chat service on a recording fake engine. Real database (SQLite, then PostgreSQL when configured)."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import SamplingParams
from mistral_gateway.engines.fake import FakeTextEngine
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.errors import GatewayError
from mistral_gateway.protocol.agents import (
    SDK_UNSET_JSON,
    AgentCreationRequest,
    AgentsCompletionRequest,
    AgentUpdateRequest,
    ListAgentsQuery,
)
from mistral_gateway.protocol.chat import ChatCompletionRequest
from mistral_gateway.services.agent_snapshot import AgentLookup
from mistral_gateway.services.agents import AgentService
from mistral_gateway.services.chat import ChatService
from mistral_gateway.services.models import ModelCatalog
from mistral_gateway.storage.agents import AgentRepository
from mistral_gateway.storage.db import Database

ENTRIES = [ModelEntry(id="chat", aliases=["mistral-small-latest"], engine="fake",
                      capabilities=["completion_chat", "function_calling"]),
           ModelEntry(id="embed", engine="fake", capabilities=[])]
TOOL = {"type": "function", "function": {"name": "lookup", "description": "find", "parameters": {"type": "object"}}}


@pytest.fixture
def agents(db: Database) -> AgentService:
    ticks = itertools.count(1_750_000_000_000_000, 1_000_000)
    return AgentService(AgentRepository(db), ModelCatalog(ENTRIES), max_agents=3, clock=lambda: next(ticks))


def create(agents: AgentService, ws: str, **fields: Any) -> Any:
    return agents.create(ws, AgentCreationRequest.model_validate({"model": "mistral-small-latest", "name": "a",
                                                                  **fields}))


def update(agents: AgentService, ws: str, agent_id: str, **fields: Any) -> Any:
    return agents.update(ws, agent_id, AgentUpdateRequest.model_validate(fields))


def refused(call: Any, status: int, code: str, *words: str) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        call()
    err = info.value
    assert (err.status, err.code) == (status, code), err.message
    assert all(w in err.message for w in words), err.message
    return err


def test_create_echoes_every_field(agents: AgentService, ws: str) -> None:
    out = create(agents, ws, instructions="Be brief.", tools=[TOOL], description="d", metadata={"k": [1]},
                 completion_args={"temperature": 0.2, "stop": ["x"]}, version_message="v0",
                 guardrails=[{"block_on_error": True}])
    assert out.id.startswith("ag_") and len(out.id) == 35 and out.object == "agent"
    assert (out.version, out.versions, out.source, out.deployment_chat) == (0, [0], "api", False)
    assert out.created_at == out.updated_at == "2025-06-15T15:06:40.000000Z"
    assert out.tools == [{"type": "function", "function": {"name": "lookup", "description": "find", "strict": False,
                                                           "parameters": {"type": "object"}}}]
    assert out.completion_args == {"stop": ["x"], "presence_penalty": None, "frequency_penalty": None,
                                   "temperature": 0.2, "top_p": None, "max_tokens": None, "random_seed": None,
                                   "prediction": None, "response_format": None, "tool_choice": "auto",
                                   "reasoning_effort": None}
    assert out.guardrails == [{"block_on_error": True}] and out.metadata == {"k": [1]}
    assert (out.instructions, out.description, out.version_message, out.handoffs) == ("Be brief.", "d", "v0", None)
    assert agents.get(ws, out.id) == out


def test_model_and_tools_are_checked(agents: AgentService, ws: str) -> None:
    refused(lambda: create(agents, ws, model="no-such-model"), 400, "MODEL_NOT_FOUND", "no-such-model")
    refused(lambda: create(agents, ws, model="embed"), 400, "UNSUPPORTED_MODEL_CAPABILITY", "completion_chat")
    for kind in ("web_search", "web_search_premium", "code_interpreter", "image_generation", "connector"):
        refused(lambda kind=kind: create(agents, ws, tools=[TOOL, {"type": kind}]), 400, "TOOL_NOT_AVAILABLE", kind)
    library = create(agents, ws, tools=[{"type": "document_library", "library_ids": ["lib"]}])  # stored
    assert library.tools == [{"type": "document_library", "library_ids": ["lib"]}]
    refused(lambda: update(agents, ws, library.id, model="embed"), 400, "UNSUPPORTED_MODEL_CAPABILITY")
    assert agents.repo.count(ws) == 1  # nothing refused was stored


def test_handoffs(agents: AgentService, ws: str, other_ws: str) -> None:
    target = create(agents, ws, name="target")
    theirs = create(agents, other_ws, name="theirs")
    out = create(agents, ws, handoffs=[target.id])
    assert out.handoffs == [target.id]
    refused(lambda: create(agents, ws, handoffs=["ag_missing"]), 400, "HANDOFF_AGENT_NOT_FOUND", "ag_missing")
    refused(lambda: create(agents, ws, handoffs=[theirs.id]), 400, "HANDOFF_AGENT_NOT_FOUND", theirs.id)
    refused(lambda: update(agents, ws, out.id, handoffs=[out.id]), 400, "INVALID_HANDOFF", "itself")
    refused(lambda: update(agents, ws, out.id, handoffs=[target.id, target.id]), 400, "INVALID_HANDOFF")
    agents.delete(ws, target.id)
    refused(lambda: update(agents, ws, out.id, handoffs=[target.id]), 400, "HANDOFF_AGENT_NOT_FOUND")
    renamed = update(agents, ws, out.id, name="renamed")  # a carried-over handoff is not checked again
    assert renamed.handoffs == [target.id] and renamed.version == 1
    assert update(agents, ws, out.id, handoffs=None).handoffs is None


def test_the_agent_limit_counts_live_agents(agents: AgentService, ws: str, other_ws: str) -> None:
    first = [create(agents, ws).id for _ in range(3)]
    refused(lambda: create(agents, ws), 400, "AGENT_LIMIT_REACHED", "3")
    create(agents, other_ws)  # per workspace
    agents.delete(ws, first[0])
    create(agents, ws)


def test_updates_make_versions(agents: AgentService, ws: str) -> None:
    agent = create(agents, ws, instructions="v0", tools=[TOOL], metadata={"a": 1}, version_message="first")
    one = update(agents, ws, agent.id, name="renamed", completion_args={"max_tokens": 5}, deployment_chat=True)
    assert (one.version, one.versions, one.name, one.deployment_chat) == (1, [0, 1], "renamed", True)
    assert one.instructions == "v0" and one.tools == agent.tools and one.metadata == {"a": 1}  # carried over
    assert one.version_message is None and one.completion_args["max_tokens"] == 5  # per version
    assert one.created_at == agent.created_at and one.updated_at > agent.updated_at
    two = update(agents, ws, agent.id, instructions=None, tools=[], model=None)  # null model: kept
    assert (two.version, two.instructions, two.tools, two.model) == (2, None, [], "mistral-small-latest")
    back = agents.update_version(ws, agent.id, 0)
    assert (back.version, back.versions, back.name, back.instructions) == (0, [0, 1, 2], "a", "v0")
    assert back.deployment_chat is True  # the agent's, not a version's
    assert agents.get(ws, agent.id).version == 0
    three = update(agents, ws, agent.id, description="d")
    assert (three.version, three.instructions) == (3, "v0")  # from the active version (0), numbered latest + 1
    assert agents.get(ws, agent.id, 1).name == "renamed" and agents.get(ws, agent.id, "2").instructions is None
    for version in (9, "9", "prod", "-1", "1.0", 10**30, "9999999999"):
        refused(lambda version=version: agents.get(ws, agent.id, version), 404, "AGENT_VERSION_NOT_FOUND")
    refused(lambda: agents.update_version(ws, agent.id, 9), 404, "AGENT_VERSION_NOT_FOUND", "9")


def test_isolation_and_delete(agents: AgentService, ws: str, other_ws: str) -> None:
    agent = create(agents, ws)
    for call in (lambda: agents.get(other_ws, agent.id), lambda: update(agents, other_ws, agent.id, name="x"),
                 lambda: agents.update_version(other_ws, agent.id, 0), lambda: agents.delete(other_ws, agent.id),
                 lambda: agents.snapshot(other_ws, agent.id, include_deleted=True)):
        refused(call, 404, "AGENT_NOT_FOUND", agent.id)
    assert agents.list(other_ws, ListAgentsQuery()).root == []
    agents.delete(ws, agent.id)
    refused(lambda: agents.delete(ws, agent.id), 404, "AGENT_NOT_FOUND")
    refused(lambda: agents.get(ws, agent.id), 404, "AGENT_NOT_FOUND")
    refused(lambda: update(agents, ws, agent.id, name="x"), 404, "AGENT_NOT_FOUND")
    assert agents.list(ws, ListAgentsQuery()).root == []


def test_snapshot_is_the_conversations_lookup(agents: AgentService, ws: str) -> None:
    lookup: AgentLookup = agents
    agent = create(agents, ws, instructions="Be brief.", tools=[TOOL], completion_args={"temperature": 0.1})
    update(agents, ws, agent.id, instructions="v1")
    now = lookup.snapshot(ws, agent.id)
    assert (now.id, now.version, now.instructions, now.model, now.name) == (agent.id, 1, "v1", "mistral-small-latest",
                                                                           "a")
    assert now.tools == agent.tools and now.completion_args == {"temperature": 0.1}  # only the keys set
    assert now.handoffs == [] and now.deleted is False
    assert lookup.snapshot(ws, agent.id, 0).instructions == "Be brief."
    assert lookup.snapshot(ws, agent.id, "0").version == 0
    refused(lambda: lookup.snapshot(ws, agent.id, 5), 400, "AGENT_VERSION_NOT_FOUND")
    refused(lambda: lookup.snapshot(ws, agent.id, "latest"), 400, "AGENT_VERSION_NOT_FOUND")
    for huge in (2**31, 10**30, -1, "99999999999"):  # never reaches the database's integer column
        refused(lambda huge=huge: lookup.snapshot(ws, agent.id, huge), 400, "AGENT_VERSION_NOT_FOUND")
    agents.delete(ws, agent.id)
    refused(lambda: lookup.snapshot(ws, agent.id), 404, "AGENT_NOT_FOUND")
    kept = lookup.snapshot(ws, agent.id, 0, include_deleted=True)  # a conversation that ran it keeps running
    assert kept.deleted is True and kept.instructions == "Be brief."


def test_list_filters_and_a_malformed_metadata_filter(agents: AgentService, ws: str) -> None:
    a = create(agents, ws, name="alpha", metadata={"team": "x"})
    b = create(agents, ws, name="beta", metadata={"team": "y"})
    update(agents, ws, b.id, deployment_chat=True)

    def ids(**query: Any) -> list[str]:
        return [x.id for x in agents.list(ws, ListAgentsQuery.model_validate(query)).root]

    assert ids() == [a.id, b.id] and ids(page=1, page_size=1) == [b.id]
    assert ids(metadata='{"team": "x"}') == [a.id] and ids(metadata=" ") == [a.id, b.id]
    # null, and what SDK 3.7.0 sends when the filter is left unset, filter nothing
    assert ids(metadata="null") == ids(metadata=SDK_UNSET_JSON) == [a.id, b.id]
    assert ids(deployment_chat=True) == [b.id] and ids(search="ALP") == [a.id] and ids(name="beta") == [b.id]
    assert ids(sources=["playground"]) == [] and ids(id=b.id) == [b.id]
    for bad in ("{", "[1]", '"x"', "1"):
        refused(lambda bad=bad: ids(metadata=bad), 400, "INVALID_METADATA_FILTER")


def test_completion_body_merges_the_agent_under_the_request(agents: AgentService, ws: str) -> None:
    other = {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}}
    agent = create(agents, ws, instructions="Be brief.", tools=[TOOL, other],
                   completion_args={"temperature": 0.2, "max_tokens": 50, "stop": "END", "random_seed": None})
    own = {"type": "function", "function": {"name": "lookup", "description": "mine", "parameters": {}}}
    request = AgentsCompletionRequest.model_validate({
        "agent_id": agent.id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 7, "tools": [own],
        "random_seed": None, "prompt_cache_key": "k", "presence_penalty": 0.5})
    body = agents.completion_body(ws, request)
    assert body["model"] == "mistral-small-latest"
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert [t["function"]["name"] for t in body["tools"]] == ["other", "lookup"]  # the request's lookup replaces
    assert body["tools"][1]["function"]["description"] == "mine"
    assert (body["max_tokens"], body["temperature"], body["stop"], body["presence_penalty"]) == (7, 0.2, "END", 0.5)
    assert "random_seed" not in body and "prompt_cache_key" not in body and "agent_id" not in body
    ChatCompletionRequest.model_validate(body)  # a valid chat request
    plain = create(agents, ws, name="plain")
    body = agents.completion_body(ws, AgentsCompletionRequest(agent_id=plain.id, messages=request.messages))
    assert [m["role"] for m in body["messages"]] == ["user"] and "tools" not in body
    refused(lambda: agents.completion_body(ws, AgentsCompletionRequest(agent_id="ag_nope", messages=request.messages)),
            404, "AGENT_NOT_FOUND", "ag_nope")
    library = create(agents, ws, tools=[{"type": "document_library", "library_ids": ["lib"]}])
    refused(lambda: agents.completion_body(ws, AgentsCompletionRequest(agent_id=library.id,
                                                                       messages=request.messages)),
            400, "TOOL_NOT_AVAILABLE", "document_library")


class Recording(FakeTextEngine):
    def __init__(self) -> None:
        super().__init__()
        self.rendered: list[tuple[list[Any], Any]] = []
        self.params: list[SamplingParams] = []

    async def render(self, messages: Any, tools: Any = None, *, continue_last: bool = False) -> str:
        self.rendered.append((list(messages), tools))
        return await super().render(messages, tools, continue_last=continue_last)

    def stream(self, prompt: str, params: SamplingParams) -> Any:
        self.params.append(params)
        return super().stream(prompt, params)


def test_the_merged_request_runs_on_the_chat_service(agents: AgentService, ws: str, tmp_path: Path) -> None:
    engine = Recording()
    chat = ChatService(agents.catalog, EngineManager(Settings(data_dir=tmp_path, models=ENTRIES),
                                                     loaders={("fake", "text"): lambda *_: engine}))
    agent = create(agents, ws, instructions="Answer in French.", tools=[TOOL],
                   completion_args={"temperature": 0.25, "max_tokens": 3})
    request = AgentsCompletionRequest.model_validate({"agent_id": agent.id,
                                                      "messages": [{"role": "user", "content": "hello"}]})
    out = asyncio.run(chat.complete(ChatCompletionRequest.model_validate(agents.completion_body(ws, request))))
    messages, tools = engine.rendered[-1]
    assert [(m.role, m.content) for m in messages] == [("system", "Answer in French."), ("user", "hello")]
    assert [t["function"]["name"] for t in tools] == ["lookup"]
    assert (engine.params[-1].temperature, engine.params[-1].max_tokens) == (0.25, 3)
    assert out.model == "mistral-small-latest" and out.usage.completion_tokens <= 3

