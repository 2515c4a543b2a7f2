"""Conversations through the official SDK (mistralai 3.7.0, ``client.beta.conversations``) on real models: the
eight operations and ``start_stream`` on the smallest model (SmolLM2-135M as ``ministral-3b-latest``); the run
helpers (``run_async`` with a ``RunContext`` holding a local function, and with an ``output_format`` model;
``run_stream_async``) on the smallest model with function calling (Qwen2.5-Coder-1.5B as ``mistral-small-latest``);
and a conversation that outlives its server (stopped and started again on the same data dir).

If the SDK rejects an answer, the server's shape is wrong: these tests are the compatibility contract.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mistralai.client import Mistral
from mistralai.client.errors import MistralError
from mistralai.extra.run.context import RunContext
from pydantic import BaseModel

from mistral_gateway.config import Settings
from support import serving

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SMALL = "ministral-3b-latest"
TOOLS = "mistral-small-latest"  # the smallest bundled model with function calling
ARGS = {"max_tokens": 16, "temperature": 0}


def settings_at(data_dir: Path, weights_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, weights_path=weights_dir, bootstrap_dev_token=False)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("conversations-sdk") / "data"


@pytest.fixture(scope="module")
def server(data_dir: Path, weights_dir: Path) -> Iterator[tuple[str, str]]:
    with serving(settings_at(data_dir, weights_dir)) as (live, _services, token):
        yield live.base_url, token


@pytest.fixture(scope="module")
def sdk(server: tuple[str, str]) -> Iterator[Mistral]:
    with Mistral(api_key=server[1], server_url=server[0], timeout_ms=120_000) as client:
        yield client


def fresh(server: tuple[str, str]) -> Mistral:
    """A client for one ``asyncio.run``: an async client's connections belong to the loop that opened them."""
    return Mistral(api_key=server[1], server_url=server[0], timeout_ms=120_000)


def test_the_eight_operations(sdk: Mistral) -> None:
    conversations = sdk.beta.conversations
    res = conversations.start(inputs="Name a colour.", model=SMALL, instructions="Answer in one word.",
                              completion_args=ARGS, name="colours", metadata={"suite": "sdk"})
    assert res.conversation_id.startswith("conv_") and res.usage.total_tokens
    first = res.outputs[0]
    assert first.type == "message.output" and first.id.startswith("msg_") and isinstance(first.content, str)
    cid = res.conversation_id

    more = conversations.append(conversation_id=cid, inputs="Another one.")
    assert len(more.outputs) == 1 and more.outputs[0].type == "message.output"

    got = conversations.get(conversation_id=cid)
    assert (got.id, got.model, got.instructions, got.name) == (cid, SMALL, "Answer in one word.", "colours")
    assert got.completion_args is not None and got.completion_args.max_tokens == 16
    assert cid in [c.id for c in conversations.list(metadata={"suite": "sdk"})]
    assert conversations.list(page=0, page_size=1)

    history = conversations.get_history(conversation_id=cid)
    kinds = [e.type for e in history.entries]
    assert kinds == ["message.input", "message.output", "message.input", "message.output"]
    assert history.entries[1].id == first.id
    messages = conversations.get_messages(conversation_id=cid)
    assert [m.type for m in messages.messages] == kinds

    branch = conversations.restart(conversation_id=cid, from_entry_id=history.entries[1].id, inputs="And a fruit?")
    assert branch.conversation_id != cid
    assert len(conversations.get_history(conversation_id=branch.conversation_id).entries) == 4

    conversations.delete(conversation_id=cid)
    with pytest.raises(MistralError) as err:
        conversations.get(conversation_id=cid)
    assert err.value.status_code == 404


def test_start_stream(sdk: Mistral) -> None:
    with sdk.beta.conversations.start_stream(inputs="Say hello.", model=SMALL, completion_args=ARGS) as stream:
        events = list(stream)
    kinds = [e.event for e in events]
    assert kinds[0] == "conversation.response.started" and kinds[-1] == "conversation.response.done"
    deltas = [e.data for e in events if e.event == "message.output.delta"]
    assert deltas and len({d.id for d in deltas}) == 1
    cid = events[0].data.conversation_id
    stored = sdk.beta.conversations.get_history(conversation_id=cid).entries[-1]
    assert stored.id == deltas[0].id and stored.content == "".join(d.content for d in deltas)
    assert events[-1].data.usage.completion_tokens

    with sdk.beta.conversations.append_stream(conversation_id=cid, inputs="Again.") as stream:
        kinds = [e.event for e in stream]
    assert kinds[0] == "conversation.response.started" and kinds[-1] == "conversation.response.done"
    first = sdk.beta.conversations.get_history(conversation_id=cid).entries[0].id
    with sdk.beta.conversations.restart_stream(conversation_id=cid, from_entry_id=first, inputs="Once more.") as stream:
        events = list(stream)
    branch = events[0].data.conversation_id
    assert branch != cid and events[-1].event == "conversation.response.done"
    assert len(sdk.beta.conversations.get_history(conversation_id=branch).entries) == 3


def test_unknown_agent_and_unavailable_tools(sdk: Mistral) -> None:
    with pytest.raises(MistralError) as err:
        sdk.beta.conversations.start(inputs="hi", agent_id="ag_0123456789abcdef0123456789abcdef")
    assert err.value.status_code == 404
    with pytest.raises(MistralError) as err:
        sdk.beta.conversations.start(inputs="hi", model=SMALL, tools=[{"type": "web_search"}])
    assert err.value.status_code == 400 and "web_search" in err.value.body


CALLS: list[str] = []


def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: the city's name
    """
    CALLS.append(city)
    return f"It is sunny and 21 degrees in {city}."


def test_run_async_with_a_local_function(sdk: Mistral, server: tuple[str, str]) -> None:
    async def run() -> Any:
        async with RunContext(model=TOOLS) as ctx, fresh(server) as client:
            ctx.register_func(get_weather)
            return await client.beta.conversations.run_async(
                run_ctx=ctx, inputs="What is the weather in Paris? Use the get_weather tool.",
                completion_args={"max_tokens": 48, "temperature": 0})

    CALLS.clear()
    result = asyncio.run(run())
    assert CALLS, "the model never called the local function"
    kinds = [e.type for e in result.output_entries]
    assert kinds[:2] == ["function.call", "function.result"] and kinds[-1] == "message.output"
    history = sdk.beta.conversations.get_history(conversation_id=result.conversation_id)
    assert [e.type for e in history.entries][:3] == ["message.input", "function.call", "function.result"]


class City(BaseModel):
    name: str
    country: str


def test_run_async_with_an_output_format(server: tuple[str, str]) -> None:
    async def run() -> Any:
        async with RunContext(model=SMALL, output_format=City) as ctx, fresh(server) as client:
            return await client.beta.conversations.run_async(
                run_ctx=ctx, inputs="Give the capital of France as JSON.",
                completion_args={"max_tokens": 48, "temperature": 0})

    result = asyncio.run(run())
    city = result.output_as_model
    assert isinstance(city, City) and city.name and city.country


def test_run_stream_async(server: tuple[str, str]) -> None:
    async def run() -> list[Any]:
        async with RunContext(model=TOOLS) as ctx, fresh(server) as client:
            ctx.register_func(get_weather)
            return [e async for e in await client.beta.conversations.run_stream_async(
                run_ctx=ctx, inputs="What is the weather in Rome? Use the get_weather tool.",
                completion_args={"max_tokens": 48, "temperature": 0})]

    CALLS.clear()
    events = asyncio.run(run())
    result = events[-1]
    assert CALLS and hasattr(result, "output_entries")
    kinds = [e.type for e in result.output_entries]
    assert "function.call" in kinds and "function.result" in kinds and kinds[-1] == "message.output"
    names = [getattr(e, "event", None) for e in events[:-1]]
    assert "function.call.delta" in names and names.count("conversation.response.done") >= 2  # one per request


def test_a_conversation_survives_a_restart(tmp_path: Path, weights_dir: Path) -> None:
    settings = settings_at(tmp_path / "data", weights_dir)
    with serving(settings) as (server, services, _token):
        token, _ = services.tokens.create("kept")
        with Mistral(api_key=token, server_url=server.base_url, timeout_ms=120_000) as client:
            cid = client.beta.conversations.start(inputs="Hi!", model=SMALL, completion_args=ARGS).conversation_id
    with serving(settings) as (server, _services, _token), \
            Mistral(api_key=token, server_url=server.base_url, timeout_ms=120_000) as client:
        assert len(client.beta.conversations.get_history(conversation_id=cid).entries) == 2
        client.beta.conversations.append(conversation_id=cid, inputs="Again!")
        assert len(client.beta.conversations.get_history(conversation_id=cid).entries) == 4


# -- conversations with stored agents (the agents service, not a fake lookup) ----------------------------------
def _handoff_pair(sdk: Mistral) -> tuple[Any, Any]:
    """A triage agent that must call a tool (``tool_choice: any``) and has no tool but its handoff, so its first
    move is always the handoff; and the expert it hands to, which answers in text."""
    agents = sdk.beta.agents
    expert = agents.create(model=TOOLS, name="colour-expert", description="Answers questions about colours.",
                           instructions="Answer in one word.", completion_args=ARGS)
    triage = agents.create(model=TOOLS, name="triage", instructions="Hand every question to the colour expert.",
                           handoffs=[expert.id], completion_args={"tool_choice": "any", "max_tokens": 64,
                                                                  "temperature": 0})
    return triage, expert


def test_a_server_side_handoff_between_two_stored_agents(sdk: Mistral) -> None:
    triage, expert = _handoff_pair(sdk)
    res = sdk.beta.conversations.start(agent_id=triage.id, inputs="What colour is the sky?")
    assert [o.type for o in res.outputs] == ["agent.handoff", "message.output"]
    handoff, answer = res.outputs
    assert (handoff.previous_agent_id, handoff.previous_agent_name) == (triage.id, "triage")
    assert (handoff.next_agent_id, handoff.next_agent_name) == (expert.id, "colour-expert")
    assert handoff.id.startswith("handoff_") and answer.agent_id == expert.id and answer.content
    history = sdk.beta.conversations.get_history(conversation_id=res.conversation_id).entries
    assert [e.type for e in history] == ["message.input", "agent.handoff", "message.output"]
    # the next turn stays with the expert: no second handoff
    more = sdk.beta.conversations.append(conversation_id=res.conversation_id, inputs="And grass?")
    assert [o.type for o in more.outputs] == ["message.output"] and more.outputs[0].agent_id == expert.id


def test_a_client_side_handoff_returns_control_and_the_next_turn_runs_the_new_agent(sdk: Mistral) -> None:
    triage, expert = _handoff_pair(sdk)
    res = sdk.beta.conversations.start(agent_id=triage.id, inputs="What colour is snow?", handoff_execution="client")
    assert [o.type for o in res.outputs] == ["agent.handoff"] and res.outputs[0].next_agent_id == expert.id
    more = sdk.beta.conversations.append(conversation_id=res.conversation_id, inputs="Please answer.")
    assert [o.type for o in more.outputs] == ["message.output"] and more.outputs[0].agent_id == expert.id


def test_a_streamed_handoff_sends_its_started_and_done_events(sdk: Mistral) -> None:
    triage, expert = _handoff_pair(sdk)
    with sdk.beta.conversations.start_stream(agent_id=triage.id, inputs="What colour is coal?") as stream:
        events = list(stream)
    kinds = [e.event for e in events]
    assert kinds[0] == "conversation.response.started" and kinds[-1] == "conversation.response.done"
    start, done = kinds.index("agent.handoff.started"), kinds.index("agent.handoff.done")
    assert start < done < kinds.index("message.output.delta")
    assert events[start].data.previous_agent_id == triage.id and events[done].data.next_agent_id == expert.id
    deltas = [e.data for e in events if e.event == "message.output.delta"]
    assert {d.agent_id for d in deltas} == {expert.id}


def test_conversations_outlive_their_deleted_agents(sdk: Mistral) -> None:
    triage, expert = _handoff_pair(sdk)
    res = sdk.beta.conversations.start(agent_id=triage.id, inputs="What colour is a lemon?")
    for agent in (triage, expert):
        sdk.beta.agents.delete(agent_id=agent.id)
    with pytest.raises(MistralError) as err:
        sdk.beta.agents.get(agent_id=triage.id)
    assert err.value.status_code == 404
    cid = res.conversation_id
    assert sdk.beta.conversations.get(conversation_id=cid).agent_id == triage.id
    assert len(sdk.beta.conversations.get_history(conversation_id=cid).entries) == 3
    more = sdk.beta.conversations.append(conversation_id=cid, inputs="And an orange?")
    assert more.outputs[-1].type == "message.output" and more.outputs[-1].agent_id == expert.id
    # a new conversation with a deleted agent is refused
    with pytest.raises(MistralError) as err:
        sdk.beta.conversations.start(agent_id=triage.id, inputs="hi")
    assert err.value.status_code == 404


def test_run_async_with_a_stored_agent_and_a_local_function(server: tuple[str, str]) -> None:
    """The SDK adds the RunContext's functions to the agent (an update: a new version), then starts the
    conversation with the agent id; the function runs client-side and its result is appended."""
    async def run() -> Any:
        with fresh(server) as client:
            agent = client.beta.agents.create(model=TOOLS, name="weather", instructions="Use the tools.",
                                              completion_args={"max_tokens": 48, "temperature": 0})
            async with RunContext(agent_id=agent.id) as ctx:
                ctx.register_func(get_weather)
                result = await client.beta.conversations.run_async(
                    run_ctx=ctx, inputs="What is the weather in Paris? Use the get_weather tool.")
            return agent, client.beta.agents.get(agent_id=agent.id), result

    CALLS.clear()
    agent, updated, result = asyncio.run(run())
    assert updated.version == 1 and [t.function.name for t in updated.tools or []] == ["get_weather"]
    assert CALLS, "the model never called the local function"
    kinds = [e.type for e in result.output_entries]
    assert kinds[:2] == ["function.call", "function.result"] and kinds[-1] == "message.output"
    assert agent.version == 0
