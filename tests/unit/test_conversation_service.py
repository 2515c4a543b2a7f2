"""The conversation service on a real database with scripted model answers (``ScriptedChat``) and a fake agent
lookup: text turns, the function-call round trip, handoffs run on the server or returned to the client, the chain
bound, store=false, restart, stream event order and what a failing model leaves behind."""

from __future__ import annotations

import json

import pytest

from conversation_support import FakeAgents, ScriptedChat, agent, append, events, run, start, turn
from mistral_gateway.errors import BadGateway, BadRequest, Conflict, NotFound
from mistral_gateway.protocol.conversations import (
    ConversationListQuery,
    ConversationRestartRequest,
)
from mistral_gateway.services.conversation_turns import MAX_HANDOFFS
from mistral_gateway.services.conversations import ConversationService
from mistral_gateway.storage.conversations import ConversationRepository
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.tokens import TokenRepository

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}


@pytest.fixture
def ws(db: Database) -> str:
    return TokenRepository(db).ensure_workspace("default", 1_700_000_000).id


@pytest.fixture
def other_ws(db: Database) -> str:
    return TokenRepository(db).ensure_workspace("other", 1_700_000_000).id


@pytest.fixture
def agents() -> FakeAgents:
    return FakeAgents()


@pytest.fixture
def svc(db: Database, agents: FakeAgents) -> ConversationService:
    return ConversationService(ConversationRepository(db), agents)


def test_a_text_turn_is_stored_with_its_input(svc: ConversationService, ws: str) -> None:
    chat = ScriptedChat(["Paris."])
    out = turn(svc, svc.start(ws, start(inputs="Capital of France?", model="fake-model", instructions="Be brief",
                                        name="geo", metadata={"k": "v"})), chat)
    assert [o.type for o in out.outputs] == ["message.output"]
    assert out.outputs[0].content == "Paris." and out.outputs[0].id.startswith("msg_")
    assert out.usage.prompt_tokens == 10 and out.usage.total_tokens == 13
    sent = chat.requests[0]
    assert [m.role for m in sent.messages] == ["system", "user"] and sent.messages[0].content == "Be brief"
    history = svc.history(ws, out.conversation_id).entries
    assert [(e.type, getattr(e, "role", None)) for e in history] == [("message.input", "user"),
                                                                     ("message.output", "assistant")]
    assert history[1].id == out.outputs[0].id
    conv = svc.get(ws, out.conversation_id)
    assert (conv.model, conv.instructions, conv.name, conv.metadata) == ("fake-model", "Be brief", "geo", {"k": "v"})

    # the next turn sees the history
    chat.replies.append("About 2 million.")
    more = turn(svc, svc.append(ws, out.conversation_id, append(inputs="Population?")), chat)
    assert [m.role for m in chat.requests[1].messages] == ["system", "user", "assistant", "user"]
    assert more.outputs[0].content == "About 2 million."
    assert len(svc.messages(ws, out.conversation_id).messages) == 4


def test_function_call_round_trip(svc: ConversationService, ws: str) -> None:
    chat = ScriptedChat([[("get_weather", '{"city": "Paris"}')], "It is sunny in Paris."])
    out = turn(svc, svc.start(ws, start(inputs="Weather in Paris?", model="fake-model", tools=[WEATHER])), chat)
    call = out.outputs[-1]
    assert call.type == "function.call" and call.name == "get_weather" and call.id.startswith("fc_")
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert chat.requests[0].tools[0].function.name == "get_weather"

    result = {"type": "function.result", "tool_call_id": call.tool_call_id, "result": "sunny"}
    done = turn(svc, svc.append(ws, out.conversation_id, append(inputs=[result])), chat)
    assert done.outputs[0].content == "It is sunny in Paris."
    roles = [m.role for m in chat.requests[1].messages]
    assert roles == ["user", "assistant", "tool"]
    assert chat.requests[1].messages[1].tool_calls[0].id == call.tool_call_id
    assert [e.type for e in svc.history(ws, out.conversation_id).entries] == [
        "message.input", "function.call", "function.result", "message.output"]

    # a result for a call the conversation never made is refused before any model call
    with pytest.raises(BadRequest, match="tool_call_id"):
        run(svc.append(ws, out.conversation_id, append(inputs=[{**result, "tool_call_id": "nope12345"}])))


def test_server_handoff_runs_the_next_agent_in_the_same_turn(svc: ConversationService, ws: str,
                                                             agents: FakeAgents) -> None:
    agents.add(ws, agent("ag_b", "Math Expert", instructions="You do maths"))
    agents.add(ws, agent("ag_a", "Triage", handoffs=["ag_b"], instructions="Route questions"))
    chat = ScriptedChat([[("transfer_to_math_expert", "{}")], "4"])
    out = turn(svc, svc.start(ws, start(inputs="2+2?", agent_id="ag_a")), chat)
    assert [o.type for o in out.outputs] == ["agent.handoff", "message.output"]
    handoff = out.outputs[0]
    assert (handoff.previous_agent_id, handoff.next_agent_id, handoff.next_agent_name) == ("ag_a", "ag_b",
                                                                                            "Math Expert")
    assert out.outputs[1].agent_id == "ag_b" and out.outputs[1].content == "4"
    assert out.usage.prompt_tokens == 20  # summed over the turn's two model calls
    first, second = chat.requests
    assert "transfer_to_math_expert" in [t.function.name for t in first.tools]
    assert second.messages[0].content == "You do maths" and second.messages[-1].role == "tool"

    # the conversation stays with the agent it was handed to
    chat.replies.append("6")
    turn(svc, svc.append(ws, out.conversation_id, append(inputs="3+3?")), chat)
    assert chat.requests[-1].messages[0].content == "You do maths"


def test_client_handoff_ends_the_turn(svc: ConversationService, ws: str, agents: FakeAgents) -> None:
    agents.add(ws, agent("ag_b", "Math Expert", instructions="You do maths"))
    agents.add(ws, agent("ag_a", "Triage", handoffs=["ag_b"]))
    chat = ScriptedChat([[("transfer_to_math_expert", "{}")], "4"])
    out = turn(svc, svc.start(ws, start(inputs="2+2?", agent_id="ag_a", handoff_execution="client")), chat)
    assert [o.type for o in out.outputs] == ["agent.handoff"] and len(chat.requests) == 1
    turn(svc, svc.append(ws, out.conversation_id, append(inputs="go on")), chat)
    assert chat.requests[-1].messages[0].content == "You do maths"


def test_handoff_chain_is_bounded(svc: ConversationService, ws: str, agents: FakeAgents) -> None:
    agents.add(ws, agent("ag_a", "Ping", handoffs=["ag_b"]))
    agents.add(ws, agent("ag_b", "Pong", handoffs=["ag_a"]))
    chat = ScriptedChat([[("transfer_to_pong", "{}")], [("transfer_to_ping", "{}")]] * MAX_HANDOFFS)
    with pytest.raises(BadRequest, match="handed"):
        turn(svc, svc.start(ws, start(inputs="hi", agent_id="ag_a")), chat)
    assert len(chat.requests) == MAX_HANDOFFS + 1
    assert svc.list(ws, ConversationListQuery()).root == []  # a failed turn stores nothing


def test_store_false_persists_nothing(svc: ConversationService, ws: str) -> None:
    chat = ScriptedChat(["a", "b", "c"])
    out = turn(svc, svc.start(ws, start(inputs="hi", model="fake-model", store=False)), chat)
    assert out.conversation_id.startswith("conv_")
    with pytest.raises(NotFound):
        svc.get(ws, out.conversation_id)
    kept = turn(svc, svc.start(ws, start(inputs="hi", model="fake-model")), chat)
    turn(svc, svc.append(ws, kept.conversation_id, append(inputs="again", store=False)), chat)
    assert [m.role for m in chat.requests[-1].messages] == ["user", "assistant", "user"]  # ran on the history
    assert len(svc.history(ws, kept.conversation_id).entries) == 2


def test_restart_branches_a_new_conversation(svc: ConversationService, ws: str) -> None:
    chat = ScriptedChat(["one", "two", "uno"])
    first = turn(svc, svc.start(ws, start(inputs="count", model="fake-model", metadata={"a": 1})), chat)
    turn(svc, svc.append(ws, first.conversation_id, append(inputs="more")), chat)
    entries = svc.history(ws, first.conversation_id).entries
    restart = ConversationRestartRequest(from_entry_id=entries[1].id, inputs="in Italian")
    branch = turn(svc, svc.restart(ws, first.conversation_id, restart), chat)
    assert branch.conversation_id != first.conversation_id
    copied = svc.history(ws, branch.conversation_id).entries
    assert [e.type for e in copied] == ["message.input", "message.output", "message.input", "message.output"]
    assert copied[1].content == "one" and copied[1].id != entries[1].id
    assert svc.get(ws, branch.conversation_id).metadata == {"a": 1}
    assert len(svc.history(ws, first.conversation_id).entries) == 4  # the original is untouched
    with pytest.raises(BadRequest, match="not an entry"):
        run(svc.restart(ws, first.conversation_id, ConversationRestartRequest(from_entry_id="msg_x", inputs="x")))


def test_stream_event_order_and_stored_entries_match(svc: ConversationService, ws: str) -> None:
    chat = ScriptedChat(["Hello there!", [("get_weather", '{"city": "Rome"}')]])
    got = events(svc, svc.start(ws, start(inputs="hi", model="fake-model", tools=[WEATHER], stream=True)), chat)
    kinds = [e.type for e in got]
    assert kinds[0] == "conversation.response.started" and kinds[-1] == "conversation.response.done"
    deltas = [e for e in got if e.type == "message.output.delta"]
    assert len(deltas) == 3 and len({d.id for d in deltas}) == 1 and "".join(d.content for d in deltas) == \
        "Hello there!"
    conversation_id = got[0].conversation_id
    assert got[-1].usage.total_tokens == 13
    history = svc.history(ws, conversation_id).entries
    assert history[1].id == deltas[0].id and history[1].content == "Hello there!"

    got = events(svc, svc.append(ws, conversation_id, append(inputs="weather?", stream=True)), chat)
    assert [e.type for e in got] == ["conversation.response.started", "function.call.delta",
                                     "conversation.response.done"]
    call = svc.history(ws, conversation_id).entries[-1]
    assert (call.type, call.id, call.tool_call_id) == ("function.call", got[1].id, got[1].tool_call_id)


def test_an_empty_answer_is_streamed_as_an_empty_message(svc: ConversationService, ws: str) -> None:
    got = events(svc, svc.start(ws, start(inputs="hi", model="fake-model", stream=True)), ScriptedChat([""]))
    assert [e.type for e in got] == ["conversation.response.started", "message.output.delta",
                                     "conversation.response.done"]
    stored = svc.history(ws, got[0].conversation_id).entries[-1]
    assert (stored.type, stored.id, stored.content) == ("message.output", got[1].id, "")


def test_stream_handoff_events(svc: ConversationService, ws: str, agents: FakeAgents) -> None:
    agents.add(ws, agent("ag_b", "Math Expert"))
    agents.add(ws, agent("ag_a", "Triage", handoffs=["ag_b"]))
    got = events(svc, svc.start(ws, start(inputs="2+2?", agent_id="ag_a", stream=True)),
                 ScriptedChat([[("transfer_to_math_expert", "{}")], "4"]))
    assert [e.type for e in got] == ["conversation.response.started", "agent.handoff.started",
                                     "agent.handoff.done", "message.output.delta", "conversation.response.done"]
    assert got[3].output_index == 1 and got[3].agent_id == "ag_b"


def test_a_failing_model_stores_nothing(svc: ConversationService, ws: str) -> None:
    chat = ScriptedChat([BadGateway("engine down")])
    with pytest.raises(BadGateway):
        turn(svc, svc.start(ws, start(inputs="hi", model="fake-model")), chat)
    chat.replies.append(BadGateway("engine down"))  # before the stream began: the request fails as a whole
    with pytest.raises(BadGateway):
        events(svc, svc.start(ws, start(inputs="hi", model="fake-model", stream=True)), chat)
    assert svc.list(ws, ConversationListQuery()).root == []


def test_a_model_failing_mid_stream_ends_it_with_an_error_event(svc: ConversationService, ws: str,
                                                                agents: FakeAgents) -> None:
    agents.add(ws, agent("ag_b", "Math Expert"))
    agents.add(ws, agent("ag_a", "Triage", handoffs=["ag_b"]))
    chat = ScriptedChat([[("transfer_to_math_expert", "{}")], BadGateway("engine down")])
    got = events(svc, svc.start(ws, start(inputs="2+2?", agent_id="ag_a", stream=True)), chat)
    assert [e.type for e in got] == ["conversation.response.started", "agent.handoff.started",
                                     "agent.handoff.done", "conversation.response.error"]
    assert got[-1].code == 502 and "engine down" in got[-1].message
    assert svc.list(ws, ConversationListQuery()).root == []


def test_bad_starts(svc: ConversationService, ws: str, agents: FakeAgents) -> None:
    with pytest.raises(BadRequest, match="either agent_id or model"):
        run(svc.start(ws, start(inputs="x")))
    with pytest.raises(BadRequest, match="either agent_id or model"):
        run(svc.start(ws, start(inputs="x", model="m", agent_id="ag_a")))
    with pytest.raises(NotFound):
        run(svc.start(ws, start(inputs="x", agent_id="ag_missing")))
    with pytest.raises(BadRequest, match="web_search"):
        run(svc.start(ws, start(inputs="x", model="m", tools=[{"type": "web_search"}])))
    with pytest.raises(BadRequest, match="document_library"):
        run(svc.start(ws, start(inputs="x", model="m", tools=[{"type": "document_library", "library_ids": ["l"]}])))


def test_agent_conversations_survive_the_agent_and_workspaces_are_apart(
        svc: ConversationService, ws: str, other_ws: str, agents: FakeAgents) -> None:
    agents.add(ws, agent("ag_a", "Helper", version=0))
    agents.add(ws, agent("ag_a", "Helper", version=1, instructions="v1"))
    chat = ScriptedChat(["hi", "again"])
    out = turn(svc, svc.start(ws, start(inputs="hello", agent_id="ag_a", agent_version=0)), chat)
    assert svc.get(ws, out.conversation_id).agent_version == 0
    agents.deleted.add("ag_a")
    assert svc.get(ws, out.conversation_id).agent_id == "ag_a"
    turn(svc, svc.append(ws, out.conversation_id, append(inputs="more")), chat)
    assert chat.requests[-1].messages[0].role == "user"  # version 0 (no instructions) kept running
    with pytest.raises(NotFound):
        svc.get(other_ws, out.conversation_id)
    with pytest.raises(NotFound):
        run(svc.append(other_ws, out.conversation_id, append(inputs="x")))
    with pytest.raises(NotFound):
        svc.delete(other_ws, out.conversation_id)
    svc.delete(ws, out.conversation_id)
    with pytest.raises(NotFound):
        svc.history(ws, out.conversation_id)


def test_a_concurrent_append_is_a_conflict(svc: ConversationService, ws: str) -> None:
    chat = ScriptedChat(["a", "b", "c"])
    out = turn(svc, svc.start(ws, start(inputs="hi", model="fake-model")), chat)

    async def both() -> None:
        one = await svc.append(ws, out.conversation_id, append(inputs="x"))
        two = await svc.append(ws, out.conversation_id, append(inputs="y"))  # prepared on the same history
        await svc.respond(one, chat)
        await svc.respond(two, chat)

    with pytest.raises(Conflict):
        run(both())
    assert len(svc.history(ws, out.conversation_id).entries) == 4


def test_restart_may_change_the_agent_version(svc: ConversationService, ws: str, agents: FakeAgents) -> None:
    agents.add(ws, agent("ag_a", "Helper", version=0, instructions="v0"))
    agents.add(ws, agent("ag_a", "Helper", version=1, instructions="v1"))
    chat = ScriptedChat(["zero", "one"])
    out = turn(svc, svc.start(ws, start(inputs="hello", agent_id="ag_a", agent_version=0)), chat)
    assert chat.requests[0].messages[0].content == "v0"
    first = svc.history(ws, out.conversation_id).entries[0].id
    restart = ConversationRestartRequest(from_entry_id=first, inputs="again", agent_version=1)
    branch = turn(svc, svc.restart(ws, out.conversation_id, restart), chat)
    assert svc.get(ws, branch.conversation_id).agent_version == 1
    assert chat.requests[1].messages[0].content == "v1"
    assert [m.role for m in chat.requests[1].messages] == ["system", "user", "user"]  # up to the entry, then inputs
    with pytest.raises(BadRequest, match="no version"):
        run(svc.restart(ws, out.conversation_id, ConversationRestartRequest(from_entry_id=first, inputs="x",
                                                                            agent_version=7)))


def test_a_stream_left_early_closes_the_model_call_and_stores_nothing(svc: ConversationService, ws: str) -> None:
    chat = ScriptedChat(["A long answer, streamed in pieces."])

    async def go() -> str:
        stream = await svc.stream(await svc.start(ws, start(inputs="hi", model="fake-model", stream=True)), chat)
        started = await anext(stream)
        await anext(stream)  # one delta, then the client leaves
        await stream.aclose()  # type: ignore[attr-defined]
        assert chat.closed == 1  # at once, not when the generator is collected
        return started.conversation_id

    conversation_id = run(go())
    with pytest.raises(NotFound):
        svc.get(ws, conversation_id)
