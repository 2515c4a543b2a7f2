"""One conversation turn: the entries so far become a chat request, the model's answer becomes output entries.

A turn may take several model calls: a handoff run on the server (``handoff_execution="server"``) hands the
conversation to the next agent, whose answer is part of the same turn (at most ``MAX_HANDOFFS`` per turn). A
function call ends the turn: the client runs the function and appends its ``function.result``. A
``document_library`` tool runs here before the model call of the agent that has it (``services/library_tool.py``):
a ``tool.execution`` entry, then the answer citing the documents it drew on.

The model is reached through ``ChatCalls`` (the application layer routes, limits and meters each call), so this
module knows nothing of HTTP or of where a model runs.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from anyio.to_thread import run_sync
from pydantic import ValidationError

from mistral_gateway.errors import BadRequest, NotFound
from mistral_gateway.protocol.chat import ChatCompletionRequest, ChatCompletionResponse, CompletionChunk
from mistral_gateway.protocol.conversations import (
    ConversationEvent,
    ConversationUsage,
    FunctionCallDelta,
    HandoffDone,
    HandoffStarted,
    MessageOutputDelta,
    ToolExecutionDone,
    ToolExecutionStarted,
)
from mistral_gateway.services.agent_snapshot import AgentLookup, AgentSnapshot, new_id, now_us, rfc3339
from mistral_gateway.services.conversation_prompt import chat_messages, handoff_function
from mistral_gateway.services.library_tool import TOOL_NAME, LibraryTool, library_ids, references

__all__ = ["MAX_HANDOFFS", "ChatCalls", "Turn", "TurnRunner", "entry"]

MAX_HANDOFFS = 8  # server-run handoffs in one turn: agents handing a conversation back and forth stop here
_ALNUM = string.ascii_letters + string.digits


class ChatCalls(Protocol):
    """How a turn reaches the model: one chat completion, whole or streamed."""

    async def complete(self, request: ChatCompletionRequest) -> ChatCompletionResponse: ...

    async def stream(self, request: ChatCompletionRequest) -> AsyncIterator[CompletionChunk]: ...


@dataclass(slots=True)
class Turn:
    """What one turn needs: the entries so far (history, then this request's inputs) and how to call the model.
    ``outputs`` and ``usage`` fill in as it runs."""

    conversation_id: str
    workspace_id: str
    entries: list[dict[str, Any]]
    agent: AgentSnapshot | None  # the agent active when the turn starts (None: a model conversation)
    model: str | None = None  # a model conversation's model, instructions, tools and completion args
    config: dict[str, Any] = field(default_factory=dict)
    completion_args: dict[str, Any] = field(default_factory=dict)  # this request's, over the stored ones
    handoff_execution: str = "server"
    query: str = ""  # the user's text among this turn's inputs: what a document_library tool searches for
    outputs: list[dict[str, Any]] = field(default_factory=list)
    usage: ConversationUsage = field(default_factory=ConversationUsage)


def entry(kind: str, id_prefix: str, /, *, output: bool = False, **fields: Any) -> dict[str, Any]:
    """A new entry as the API shows it (``output``: the model's, completed now; inputs have no completion)."""
    now = rfc3339(now_us())
    return {"object": "entry", "type": kind, "created_at": now, "completed_at": now if output else None,
            "id": new_id(id_prefix), **fields}


class TurnRunner:
    def __init__(self, agents: AgentLookup, libraries: LibraryTool | None = None) -> None:
        self.agents = agents
        self.libraries = libraries  # None: document_library tools are refused before a turn starts

    async def run(self, turn: Turn, calls: ChatCalls, *, stream: bool) -> AsyncIterator[ConversationEvent]:
        """The turn's events (``stream``: deltas as the model writes; else none); its entries go to
        ``turn.outputs``. Errors (the model's, a handoff chain too long) propagate."""
        agent, handoffs, searched = turn.agent, 0, set()
        while True:
            targets = await self._handoff_targets(turn.workspace_id, agent)
            retrieval = None
            if (agent.id if agent else None) not in searched:  # once per agent and turn
                searched.add(agent.id if agent else None)
                retrieval = await self._retrieve(turn, agent)
            request = _request(turn, agent, targets)
            model = request.model
            step = _Step(msg_id=new_id("msg"), index=len(turn.outputs))
            if stream:
                chunks = await calls.stream(request)  # opened first: a model that refuses fails the request whole
                try:
                    if retrieval is not None:
                        for event in _execution_events(retrieval, len(turn.outputs) - 1):
                            yield event
                    async for chunk in chunks:
                        for event in step.take_chunk(chunk, model, agent):
                            yield event
                finally:  # closed now, not when collected: a client that left stops the generation at once
                    close = getattr(chunks, "aclose", None)
                    if close is not None:
                        await close()
            else:
                step.take_response(await calls.complete(request))
            _add_usage(turn.usage, step.usage)
            meta = {"agent_id": agent.id if agent else None, "model": model}
            cited = references(retrieval["info"]) if retrieval is not None else []
            if cited and (step.parts or not step.tool_calls):  # the answer cites what it was given
                for event in step.cite(cited, model, agent):
                    if stream:
                        yield event
            handoff = next((c for c in step.tool_calls if c["name"] in targets), None)
            functions = [c for c in step.tool_calls if c["name"] not in targets]
            if step.parts or not step.tool_calls:
                message = entry("message.output", "msg", output=True, role="assistant", content=step.content())
                turn.outputs.append({**message, "id": step.msg_id, "created_at": step.started, **meta})
                if stream and not step.parts:  # an empty answer is still an entry: stream it as one empty delta
                    yield MessageOutputDelta(output_index=step.index, id=step.msg_id, content="",
                                             created_at=turn.outputs[-1]["created_at"], **meta)
            if functions or handoff is None:
                for call in functions:
                    out = entry("function.call", "fc", output=True, tool_call_id=call["id"], name=call["name"],
                                arguments=call["arguments"], **meta, confirmation_status=None)
                    turn.outputs.append(out)
                    if stream:
                        yield FunctionCallDelta(output_index=len(turn.outputs) - 1, id=out["id"], name=out["name"],
                                                tool_call_id=out["tool_call_id"], arguments=out["arguments"],
                                                created_at=out["created_at"], **meta)
                return
            assert agent is not None  # only agents have handoff targets
            target = targets[handoff["name"]]
            out = entry("agent.handoff", "handoff", output=True, previous_agent_id=agent.id,
                        previous_agent_name=agent.name, next_agent_id=target.id, next_agent_name=target.name)
            turn.outputs.append(out)
            if stream:
                at, index = out["created_at"], len(turn.outputs) - 1
                yield HandoffStarted(output_index=index, id=out["id"], previous_agent_id=agent.id,
                                     previous_agent_name=agent.name, created_at=at)
                yield HandoffDone(output_index=index, id=out["id"], next_agent_id=target.id,
                                  next_agent_name=target.name, created_at=at)
            if turn.handoff_execution == "client":
                return
            handoffs += 1
            if handoffs > MAX_HANDOFFS:
                raise BadRequest(f"the agents handed this turn on more than {MAX_HANDOFFS} times; check their "
                                 "handoffs", code="HANDOFF_LIMIT")
            agent = target

    async def _retrieve(self, turn: Turn, agent: AgentSnapshot | None) -> dict[str, Any] | None:
        """The ``tool.execution`` entry of a document_library search for the turn's user text (added to the
        outputs), when this agent (or the model conversation) has such tools and may use tools at all."""
        source = _agent_config(agent) if agent is not None else turn.config
        ids = library_ids(source.get("tools") or ())
        choice = {**(source.get("completion_args") or {}), **turn.completion_args}.get("tool_choice")
        prefixed = bool(turn.entries) and bool(turn.entries[-1].get("prefix"))  # the model continues that text
        if not ids or not turn.query.strip() or choice == "none" or prefixed or self.libraries is None:
            return None
        started = rfc3339(now_us())
        arguments, info = await self.libraries.run(turn.workspace_id, ids, turn.query)
        out = entry("tool.execution", "tool_exec", output=True, name=TOOL_NAME, arguments=arguments, info=info,
                    agent_id=agent.id if agent else None, model=agent.model if agent else turn.model)
        out["created_at"] = started
        turn.outputs.append(out)
        runs = turn.usage.connectors or {}  # executions per tool, as Mistral counts its connectors' runs
        turn.usage.connectors = {**runs, TOOL_NAME: runs.get(TOOL_NAME, 0) + 1}
        return out

    async def _handoff_targets(self, workspace_id: str, agent: AgentSnapshot | None) -> dict[str, AgentSnapshot]:
        """The synthetic function per agent this one may hand over to, by name (deleted targets left out)."""
        targets: dict[str, AgentSnapshot] = {}
        for agent_id in (agent.handoffs if agent else ()):
            try:
                target = await run_sync(lambda a=agent_id: self.agents.snapshot(workspace_id, a))
            except NotFound:
                continue
            name = handoff_function(target.name or target.id)
            while name in targets:
                name += "_"
            targets[name] = target
        return targets


@dataclass(slots=True)
class _Step:
    """One model call's answer, whole or gathered from its chunks."""

    msg_id: str
    index: int  # output_index of the message the call writes
    started: str = field(default_factory=lambda: rfc3339(now_us()))
    parts: list[str | dict[str, Any]] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    usage: Any = None

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return [{"id": c.get("id") or _tool_call_id(), "name": c.get("name", ""),
                 "arguments": c.get("arguments") or "{}"} for _, c in sorted(self.calls.items())]

    def content(self) -> str | list[dict[str, Any]]:
        if all(isinstance(p, str) for p in self.parts):
            return "".join(p for p in self.parts if isinstance(p, str))
        chunks: list[dict[str, Any]] = []
        for part in self.parts:
            if isinstance(part, str) and chunks and chunks[-1].get("type") == "text":
                chunks[-1]["text"] += part
            else:
                chunks.append({"type": "text", "text": part} if isinstance(part, str) else part)
        return chunks

    def cite(self, cited: list[dict[str, Any]], model: str, agent: AgentSnapshot | None) -> list[MessageOutputDelta]:
        """The references join the answer's content after its text; as stream deltas, each its own content
        index (the SDK reads a delta's content as a string or one chunk)."""
        content = self.content()
        first = (1 if content else 0) if isinstance(content, str) else len(content)
        self.parts.extend(cited)
        return [MessageOutputDelta(output_index=self.index, id=self.msg_id, content_index=first + i, content=c,
                                   model=model, agent_id=agent.id if agent else None, created_at=rfc3339(now_us()))
                for i, c in enumerate(cited)]

    def take_response(self, response: ChatCompletionResponse) -> None:
        self.usage = response.usage
        message = response.choices[0].message if response.choices else None
        if message is None:
            return
        self._content(message.content)
        for i, call in enumerate(message.tool_calls or ()):
            self._call(i, call)

    def take_chunk(self, chunk: CompletionChunk, model: str, agent: AgentSnapshot | None) -> list[MessageOutputDelta]:
        if chunk.usage is not None:
            self.usage = chunk.usage
        events = []
        for choice in chunk.choices[:1]:
            for part in self._content(choice.delta.content):
                events.append(MessageOutputDelta(output_index=self.index, id=self.msg_id, content=part, model=model,
                                                 agent_id=agent.id if agent else None, created_at=rfc3339(now_us())))
            for call in choice.delta.tool_calls or ():
                self._call(call.index, call)
        return events

    def _content(self, content: Any) -> list[str | dict[str, Any]]:
        if not content:
            return []
        new = [content] if isinstance(content, str) else [
            c.text if getattr(c, "type", None) == "text" else c.model_dump(mode="json", exclude_none=True)
            for c in content]
        self.parts.extend(new)
        return new

    def _call(self, index: int, call: Any) -> None:
        slot = self.calls.setdefault(index, {})
        function = call.function if isinstance(call.function, dict) else {}
        if call.id and not slot.get("id"):
            slot["id"] = call.id
        if function.get("name") and not slot.get("name"):
            slot["name"] = function["name"]
        args = function.get("arguments")
        if args is not None:
            slot["arguments"] = slot.get("arguments", "") + (args if isinstance(args, str) else json.dumps(args))


def _execution_events(out: dict[str, Any], index: int) -> list[ConversationEvent]:
    common = {"output_index": index, "id": out["id"], "name": out["name"]}
    return [ToolExecutionStarted(**common, arguments=out["arguments"], model=out["model"], agent_id=out["agent_id"],
                                 created_at=out["created_at"]),
            ToolExecutionDone(**common, info=out["info"], created_at=out["completed_at"])]


def _tool_call_id() -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(9))  # Mistral's 9-character tool call ids


def _add_usage(total: ConversationUsage, usage: Any) -> None:
    if usage is not None:
        total.prompt_tokens += usage.prompt_tokens
        total.completion_tokens += usage.completion_tokens
        total.total_tokens = total.prompt_tokens + total.completion_tokens


def _request(turn: Turn, agent: AgentSnapshot | None, targets: dict[str, AgentSnapshot]) -> ChatCompletionRequest:
    source = _agent_config(agent) if agent is not None else turn.config
    tools = [t for t in source.get("tools") or () if t.get("type") == "function"]
    tools += [{"type": "function", "function": {
        "name": name, "parameters": {"type": "object", "properties": {}},
        "description": f"Hand the conversation to the agent {t.name!r}"
                       + (f": {t.description}" if t.description else "")}} for name, t in targets.items()]
    args = {**(source.get("completion_args") or {}), **turn.completion_args}
    body: dict[str, Any] = {"model": agent.model if agent else turn.model,
                            "messages": chat_messages(turn.entries + turn.outputs, source.get("instructions")),
                            **{k: v for k, v in args.items() if v is not None}}
    if tools:
        body["tools"] = tools
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:  # e.g. more messages than a chat request holds
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise BadRequest(f"this turn makes no valid chat request ({where}: {error['msg']})",
                         code="INVALID_CONVERSATION") from None


def _agent_config(agent: AgentSnapshot) -> dict[str, Any]:
    return {"tools": agent.tools, "completion_args": agent.completion_args, "instructions": agent.instructions}
