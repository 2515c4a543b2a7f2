"""The document_library tool in conversation turns, on a real database with scripted model answers and a fake
retriever: the tool.execution entry before the answer, the numbered passages the model gets (and gets again from
the history in later turns), the answer's tool_reference chunks, the stream's event order, when nothing is
retrieved, and the library-id checks of agents and conversations."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from conversation_support import FakeAgents, ScriptedChat, agent, events, run, start, turn
from mistral_gateway.config import ModelEntry
from mistral_gateway.errors import BadRequest
from mistral_gateway.protocol.agents import AgentCreationRequest, AgentsCompletionRequest, AgentUpdateRequest
from mistral_gateway.protocol.conversations import (
    ConversationAppendRequest,
    ConversationRestartRequest,
)
from mistral_gateway.services.agents import AgentService
from mistral_gateway.services.container import Services
from mistral_gateway.services.conversations import ConversationService
from mistral_gateway.services.library_search import Retrieved
from mistral_gateway.services.library_tool import (
    LibraryTool,
    check_library_tools,
    context_text,
    library_ids,
    references,
    user_text,
)
from mistral_gateway.services.models import ModelCatalog
from mistral_gateway.storage.agents import AgentRepository
from mistral_gateway.storage.conversations import ConversationRepository
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.library_index import ChunkHit
from mistral_gateway.storage.tokens import TokenRepository

LIB = "lib-a"
TOOL = {"type": "document_library", "library_ids": [LIB]}
FACT = "The Zorblat bridge opened in 1843 and is painted teal."


@dataclass
class FakeRetriever:
    """Chunks by library: (document id, document name, text); every search returns all of the asked libraries'
    chunks, scored in order, and is remembered."""

    chunks: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    calls: list[tuple[str, list[str], str]] = field(default_factory=list)

    async def search(self, workspace_id: str, library_ids: Sequence[str], query: str,
                     k: int | None = None) -> list[Retrieved]:
        self.calls.append((workspace_id, list(library_ids), query))
        found = [(lib, c) for lib in library_ids for c in self.chunks.get(lib, [])]
        return [Retrieved(ChunkHit(lib, doc, i, text, 1.0 - i / 10), name)
                for i, (lib, (doc, name, text)) in enumerate(found)]


@pytest.fixture
def ws(db: Database) -> str:
    return TokenRepository(db).ensure_workspace("default", 1_700_000_000).id


@pytest.fixture
def retriever() -> FakeRetriever:
    return FakeRetriever({LIB: [("doc1", "bridges.md", FACT), ("doc1", "bridges.md", "Second part."),
                                ("doc2", "other.txt", "Unrelated text " * 30)]})


@pytest.fixture
def agents(ws: str) -> FakeAgents:
    fake = FakeAgents()
    fake.add(ws, agent("ag_lib", "Librarian", tools=[TOOL], instructions="Answer from the documents."))
    fake.add(ws, agent("ag_plain", "Plain"))
    return fake


@pytest.fixture
def svc(db: Database, agents: FakeAgents, retriever: FakeRetriever) -> ConversationService:
    service = ConversationService(ConversationRepository(db), agents)
    service.runner.libraries = LibraryTool(retriever, lambda _ws, ids: {i for i in ids if i.startswith("lib-")})
    return service


def messages(chat: ScriptedChat, call: int = -1) -> list[dict[str, Any]]:
    return [m.model_dump(mode="json", exclude_none=True) for m in chat.requests[call].messages]


def test_the_helpers() -> None:
    assert library_ids([TOOL, {"type": "function"}, {"type": "document_library", "library_ids": ["b", LIB]}]) == [
        LIB, "b"]
    assert user_text([{"type": "message.input", "role": "user", "content": "one"},
                      {"type": "message.input", "role": "assistant", "content": "not this"},
                      {"type": "message.input", "role": "user", "content": [
                          {"type": "text", "text": "two"}, {"type": "image_url", "image_url": "x"}]},
                      {"type": "function.result", "tool_call_id": "x", "result": "r"}]) == "one\ntwo"
    with pytest.raises(BadRequest, match="'lib-b'") as err:
        check_library_tools("ws", [{"type": "document_library", "library_ids": [LIB, "lib-b"]}],
                            lambda _ws, ids: {LIB})
    assert err.value.code == "LIBRARY_NOT_FOUND"
    check_library_tools("ws", [{"type": "function"}], lambda _ws, ids: set())  # no library tool: nothing to check
    info = {"results": [{"document_id": "d1", "document_name": "a.md", "chunk_index": 0, "text": "alpha " * 100},
                        {"document_id": "d1", "document_name": "a.md", "chunk_index": 4, "text": "beta"},
                        {"document_id": "d2", "document_name": "b.md", "chunk_index": 1, "text": "gamma"}]}
    text = context_text(info)
    assert "[1] from 'a.md' (part 1):\nalpha" in text and "[2] from 'a.md' (part 5):\nbeta" in text
    assert text.index("[3] from 'b.md'") < text.index("citing them by number")  # the request to answer last
    assert "nothing relevant" in context_text({"results": []})
    refs = references(info)
    assert [(r["type"], r["tool"], r["title"]) for r in refs] == [("tool_reference", "document_library", "a.md"),
                                                                  ("tool_reference", "document_library", "b.md")]
    assert len(refs[0]["description"]) == 200 and refs[0]["description"].endswith("…")
    assert refs[1]["description"] == "gamma"


def test_a_turn_retrieves_before_the_model_and_cites(svc: ConversationService, ws: str,
                                                     retriever: FakeRetriever) -> None:
    chat = ScriptedChat(["It opened in 1843 [1]."])
    out = turn(svc, svc.start(ws, start(inputs="When did the Zorblat bridge open?", agent_id="ag_lib")), chat)
    assert [o.type for o in out.outputs] == ["tool.execution", "message.output"]
    execution, answer = out.outputs
    assert retriever.calls == [(ws, [LIB], "When did the Zorblat bridge open?")]
    assert (execution.name, execution.agent_id, execution.model) == ("document_library", "ag_lib", "fake-model")
    assert json.loads(execution.arguments) == {"query": "When did the Zorblat bridge open?", "library_ids": [LIB]}
    results = execution.info["results"]
    assert [(r["document_id"], r["document_name"], r["chunk_index"], r["library_id"]) for r in results] == [
        ("doc1", "bridges.md", 0, LIB), ("doc1", "bridges.md", 1, LIB), ("doc2", "other.txt", 2, LIB)]
    assert results[0]["text"] == FACT and results[0]["score"] == 1.0
    # the model got the passages as the result of a document_library call, after the question
    sent = messages(chat)
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
    call = sent[2]["tool_calls"][0]
    assert call["function"]["name"] == "document_library" and sent[3]["tool_call_id"] == call["id"]
    assert f"[1] from 'bridges.md' (part 1):\n{FACT}" in sent[3]["content"]
    assert "[3] from 'other.txt'" in sent[3]["content"]
    assert answer.content == [
        {"type": "text", "text": "It opened in 1843 [1]."},
        {"type": "tool_reference", "tool": "document_library", "title": "bridges.md", "description": FACT},
        {"type": "tool_reference", "tool": "document_library", "title": "other.txt",
         "description": ("Unrelated text " * 30)[:199] + "…"}]
    history = svc.history(ws, out.conversation_id).entries
    assert [e.type for e in history] == ["message.input", "tool.execution", "message.output"]
    assert history[1].model_dump() == execution.model_dump()
    # a later turn: the earlier passages are rendered again from the history, and it searches anew
    chat2 = ScriptedChat(["Teal [1]."])
    turn(svc, svc.append(ws, out.conversation_id, ConversationAppendRequest(inputs="What colour is it?")), chat2)
    sent = messages(chat2)
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "assistant", "user", "assistant",
                                         "tool"]
    assert sent[3]["content"] == messages(chat)[3]["content"] and sent[4]["content"] == "It opened in 1843 [1]."
    assert retriever.calls[-1][2] == "What colour is it?"
    # a restart from the first answer keeps its execution, which the new branch's model sees
    chat3 = ScriptedChat(["Again."])
    restarted = turn(svc, svc.restart(ws, out.conversation_id, ConversationRestartRequest(
        from_entry_id=answer.id, inputs="And its length?")), chat3)
    assert messages(chat3)[3]["content"] == messages(chat)[3]["content"]
    assert [e.type for e in svc.history(ws, restarted.conversation_id).entries] == [
        "message.input", "tool.execution", "message.output", "message.input", "tool.execution", "message.output"]


def test_a_streamed_turn_sends_the_execution_first(svc: ConversationService, ws: str) -> None:
    chat = ScriptedChat(["In 1843."])
    got = events(svc, svc.start(ws, start(inputs="When?", agent_id="ag_lib", stream=True)), chat)
    kinds = [e.type for e in got]
    assert kinds[:3] == ["conversation.response.started", "tool.execution.started", "tool.execution.done"]
    assert kinds[-1] == "conversation.response.done"
    started, done = got[1], got[2]
    assert (started.output_index, done.output_index, started.id, started.name) == (0, 0, done.id,
                                                                                   "document_library")
    assert json.loads(started.arguments)["query"] == "When?" and done.info["results"][0]["text"] == FACT
    deltas = [e for e in got if e.type == "message.output.delta"]
    assert "".join(d.content for d in deltas if isinstance(d.content, str)) == "In 1843."
    refs = [d for d in deltas if not isinstance(d.content, str)]
    assert [(d.content_index, d.content["title"]) for d in refs] == [(1, "bridges.md"), (2, "other.txt")]
    assert {d.output_index for d in deltas} == {1} and len({d.id for d in deltas}) == 1
    assert kinds.index("message.output.delta") > 2 and deltas[-1] is refs[-1]
    conv = svc.repository.list(ws, offset=0, limit=1, metadata={})[0]
    stored = svc.history(ws, conv.id).entries
    assert [e.type for e in stored] == ["message.input", "tool.execution", "message.output"]
    assert stored[1].id == started.id and stored[2].id == deltas[0].id
    assert stored[2].content[1:] == [d.content for d in refs]


def test_no_retrieval_without_user_text_or_with_tool_choice_none(svc: ConversationService, ws: str,
                                                                 agents: FakeAgents,
                                                                 retriever: FakeRetriever) -> None:
    weather = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    agents.add(ws, agent("ag_both", "Both", tools=[TOOL, weather]))
    out = turn(svc, svc.start(ws, start(inputs="Weather?", agent_id="ag_both")),
               ScriptedChat([[("weather", '{"city": "Paris"}')]]))
    assert [o.type for o in out.outputs] == ["tool.execution", "function.call"]  # no message, so no references
    calls = len(retriever.calls)
    chat = ScriptedChat(["Sunny."])
    answer = turn(svc, svc.append(ws, out.conversation_id, ConversationAppendRequest(inputs=[
        {"type": "function.result", "tool_call_id": out.outputs[1].tool_call_id, "result": "sunny"}])), chat)
    assert [o.type for o in answer.outputs] == ["message.output"] and answer.outputs[0].content == "Sunny."
    assert len(retriever.calls) == calls  # only a function result: nothing to search for
    none = turn(svc, svc.start(ws, start(inputs="Hi", agent_id="ag_lib", completion_args={"tool_choice": "none"})),
                ScriptedChat(["Hello."]))
    assert [o.type for o in none.outputs] == ["message.output"] and len(retriever.calls) == calls
    plain = turn(svc, svc.start(ws, start(inputs="Hi", agent_id="ag_plain")), ScriptedChat(["Hello."]))
    assert [o.type for o in plain.outputs] == ["message.output"] and len(retriever.calls) == calls
    assert plain.usage.connectors is None
    prefixed = turn(svc, svc.start(ws, start(agent_id="ag_lib", inputs=[  # the model continues the prefix
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hel", "prefix": True}])),
        ScriptedChat(["lo."]))
    assert [o.type for o in prefixed.outputs] == ["message.output"] and len(retriever.calls) == calls


def test_an_empty_retrieval_is_still_recorded(svc: ConversationService, ws: str, retriever: FakeRetriever) -> None:
    retriever.chunks.clear()
    chat = ScriptedChat(["I do not know."])
    out = turn(svc, svc.start(ws, start(inputs="When?", agent_id="ag_lib")), chat)
    assert [o.type for o in out.outputs] == ["tool.execution", "message.output"]
    assert out.outputs[0].info == {"results": []} and out.outputs[1].content == "I do not know."
    assert "nothing relevant" in messages(chat)[-1]["content"]


def test_model_conversations_check_their_library_ids(svc: ConversationService, ws: str,
                                                     retriever: FakeRetriever) -> None:
    with pytest.raises(BadRequest, match="'nope'") as err:
        run(svc.start(ws, start(inputs="x", model="fake-model", tools=[
            {"type": "document_library", "library_ids": [LIB, "nope"]}])))
    assert err.value.code == "LIBRARY_NOT_FOUND"
    chat = ScriptedChat(["1843."])
    out = turn(svc, svc.start(ws, start(inputs="When?", model="fake-model", tools=[TOOL])), chat)
    assert [o.type for o in out.outputs] == ["tool.execution", "message.output"]
    assert out.outputs[0].agent_id is None and out.outputs[0].model == "fake-model"
    assert "tools" not in chat.requests[0].model_fields_set  # the library tool is not a function of the model
    svc.runner.libraries = None  # libraries not wired: the tool is refused as before
    with pytest.raises(BadRequest, match="document_library"):
        run(svc.start(ws, start(inputs="x", model="fake-model", tools=[TOOL])))


def test_agents_check_library_ids_and_completions_refuse_the_tool(db: Database, ws: str) -> None:
    agents = AgentService(AgentRepository(db), ModelCatalog([ModelEntry(id="chat", engine="fake",
                                                                         capabilities=["completion_chat"])]))
    model = "chat"
    agents.libraries = lambda _ws, ids: {i for i in ids if i.startswith("lib-")}
    with pytest.raises(BadRequest, match="'other'") as err:
        agents.create(ws, AgentCreationRequest(model=model, name="a", tools=[
            {"type": "document_library", "library_ids": [LIB, "other"]}]))
    assert (err.value.code, err.value.param) == ("LIBRARY_NOT_FOUND", "tools")
    made = agents.create(ws, AgentCreationRequest(model=model, name="a", tools=[TOOL]))
    with pytest.raises(BadRequest, match="'gone'"):
        agents.update(ws, made.id, AgentUpdateRequest(tools=[{"type": "document_library", "library_ids": ["gone"]}]))
    assert agents.update(ws, made.id, AgentUpdateRequest(name="renamed")).tools == [TOOL]  # tools not re-checked
    with pytest.raises(BadRequest, match="conversations") as err:
        agents.completion_body(ws, AgentsCompletionRequest(agent_id=made.id,
                                                           messages=[{"role": "user", "content": "hi"}]))
    assert err.value.code == "TOOL_NOT_AVAILABLE"


def test_an_agent_handed_the_turn_searches_before_it_answers(svc: ConversationService, ws: str, agents: FakeAgents,
                                                             retriever: FakeRetriever) -> None:
    agents.add(ws, agent("ag_triage", "Triage", handoffs=["ag_lib"]))
    chat = ScriptedChat([[("transfer_to_librarian", "{}")], "In 1843 [1]."])
    out = turn(svc, svc.start(ws, start(inputs="When did it open?", agent_id="ag_triage")), chat)
    assert [o.type for o in out.outputs] == ["agent.handoff", "tool.execution", "message.output"]
    assert out.usage.connectors == {"document_library": 1}
    assert out.outputs[1].agent_id == "ag_lib" and retriever.calls == [(ws, [LIB], "When did it open?")]
    assert [m["role"] for m in messages(chat, 0)] == ["user"]  # triage has no library: it saw no passages
    assert [m["role"] for m in messages(chat, 1)][-2:] == ["assistant", "tool"]
    assert out.outputs[2].content[-1]["title"] == "other.txt"


def test_the_services_are_wired_with_the_tool(services: Services) -> None:
    assert services.conversations is not None and services.agents is not None
    tool = services.conversations.runner.libraries
    assert tool is not None and tool.search is services.library_search
    assert services.agents.libraries is tool.known
    ws = TokenRepository(services.db).ensure_workspace("w", 1_700_000_000).id
    assert tool.known(ws, ["nope"]) == set()  # the real lookup, over the libraries table
