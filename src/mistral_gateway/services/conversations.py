"""Conversations: start, append and restart prepare a ``Turn`` (checks first, so a bad request fails before any
model call or stream), ``respond`` / ``events`` run it and persist its inputs with its outputs when it ends; and
the reads (get, list, history, messages) and delete.

``store=false`` persists nothing: a started conversation still gets an id, an append runs on the stored history.
Agents are seen only through ``AgentLookup``; a conversation keeps running an agent after its deletion.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from anyio.to_thread import run_sync

from mistral_gateway.errors import BadRequest, GatewayError, NotFound
from mistral_gateway.protocol.agent_common import refuse_unavailable_tools
from mistral_gateway.protocol.conversations import (
    AgentConversation,
    ConversationAppendRequest,
    ConversationEvent,
    ConversationHistory,
    ConversationListQuery,
    ConversationMessages,
    ConversationRequest,
    ConversationResponse,
    ConversationRestartRequest,
    ConversationsList,
    ModelConversation,
    ResponseDone,
    ResponseError,
    ResponseStarted,
)
from mistral_gateway.services.agent_snapshot import AgentLookup, AgentSnapshot, new_id, now_us, rfc3339
from mistral_gateway.services.conversation_prompt import active_agent_id
from mistral_gateway.services.conversation_turns import ChatCalls, Turn, TurnRunner, entry
from mistral_gateway.services.library_tool import library_ids, user_text
from mistral_gateway.storage.conversations import ConversationRecord, ConversationRepository, StoredEntry

__all__ = ["MAX_ENTRIES", "ConversationService", "Prepared"]

MAX_ENTRIES = 2000  # per conversation: every turn sends them all to the model (a chat request holds 2048 messages)


@dataclass(slots=True)
class Prepared:
    """A turn ready to run, and where its entries go: a new conversation (``record``, after ``copied``) or the
    end of a stored one (at ``seq``)."""

    turn: Turn
    inputs: list[dict[str, Any]]
    store: bool
    record: ConversationRecord | None = None
    copied: list[dict[str, Any]] = field(default_factory=list)
    seq: int = 0


class ConversationService:
    def __init__(self, repository: ConversationRepository, agents: AgentLookup) -> None:
        self.repository = repository
        self.agents = agents
        self.runner = TurnRunner(agents)

    # -- preparing turns (all checks happen here) ------------------------------------------------------------------
    async def start(self, workspace_id: str, req: ConversationRequest) -> Prepared:
        if (req.agent_id is None) == (req.model is None):
            raise BadRequest("give either agent_id or model (not both)", code="AGENT_OR_MODEL", param="agent_id")
        libraries = self.runner.libraries
        refuse_unavailable_tools(req.tools, libraries=libraries is not None)
        agent = None
        if req.agent_id is not None:
            if req.instructions is not None or req.tools:
                raise BadRequest("instructions and tools belong to the agent: a conversation with agent_id takes "
                                 "neither", param="instructions" if req.instructions is not None else "tools")
            agent = await run_sync(lambda: self.agents.snapshot(workspace_id, req.agent_id, req.agent_version))
        elif req.agent_version is not None:
            raise BadRequest("agent_version needs agent_id", param="agent_version")
        config = {"instructions": req.instructions,
                  "tools": [t.model_dump(mode="json", exclude_none=True) for t in req.tools or ()],
                  "completion_args": _args(req.completion_args),  # guardrails: accepted, not applied nor kept
                  "handoff_execution": req.handoff_execution or "server"}
        if libraries is not None and library_ids(config["tools"]):
            await libraries.check(workspace_id, config["tools"])
        now = now_us()
        record = ConversationRecord(new_id("conv"), workspace_id, agent.id if agent else None,
                                    agent.version if agent else None, agent.model if agent else req.model, config,
                                    req.name, req.description, req.metadata, now, now)
        inputs = _inputs(req.inputs, [])
        return Prepared(self._turn(record, [], inputs, agent, req), inputs, req.store is not False, record=record)

    async def append(self, workspace_id: str, conversation_id: str, req: ConversationAppendRequest) -> Prepared:
        record, history = await run_sync(self._stored, workspace_id, conversation_id)
        inputs = _inputs(req.inputs, history)
        _check_size(len(history) + len(inputs))
        agent = await self._active_agent(record, history)
        return Prepared(self._turn(record, history, inputs, agent, req), inputs, req.store is not False,
                        seq=len(history))

    async def restart(self, workspace_id: str, conversation_id: str, req: ConversationRestartRequest) -> Prepared:
        record, history = await run_sync(self._stored, workspace_id, conversation_id)
        at = next((i for i, e in enumerate(history) if e["id"] == req.from_entry_id), None)
        if at is None:
            raise BadRequest(f"entry {req.from_entry_id!r} is not an entry of conversation {conversation_id!r}",
                             code="ENTRY_NOT_FOUND", param="from_entry_id")
        copied = [{**e, "id": new_id(e["id"].rsplit("_", 1)[0])} for e in history[:at + 1]]
        inputs = _inputs(req.inputs, copied)
        _check_size(len(copied) + len(inputs))
        now = now_us()
        record = replace(record, id=new_id("conv"), created_at=now, updated_at=now,
                         metadata=req.metadata if req.metadata is not None else record.metadata)
        if req.agent_version is not None:
            if record.agent_id is None:
                raise BadRequest("agent_version applies to agent conversations only", param="agent_version")
            version = (await run_sync(lambda: self.agents.snapshot(
                workspace_id, record.agent_id, req.agent_version, include_deleted=True))).version
            record = replace(record, agent_version=version)
        agent = await self._active_agent(record, copied)
        return Prepared(self._turn(record, copied, inputs, agent, req), inputs, req.store is not False,
                        record=record, copied=copied)

    def _turn(self, record: ConversationRecord, history: list[dict[str, Any]], inputs: list[dict[str, Any]],
              agent: AgentSnapshot | None, req: Any) -> Turn:
        config = record.config
        return Turn(record.id, record.workspace_id, history + inputs, agent, model=record.model, config=config,
                    completion_args={**((config.get("completion_args") or {}) if agent else {}),
                                     **_args(req.completion_args)},
                    handoff_execution=req.handoff_execution or config.get("handoff_execution") or "server",
                    query=user_text(inputs))

    async def _active_agent(self, record: ConversationRecord, history: list[dict[str, Any]]) -> AgentSnapshot | None:
        if record.agent_id is None:
            return None
        active = active_agent_id(history, record.agent_id)
        version = record.agent_version if active == record.agent_id else None
        return await run_sync(lambda: self.agents.snapshot(record.workspace_id, active, version,
                                                           include_deleted=True))

    def _stored(self, workspace_id: str, conversation_id: str) -> tuple[ConversationRecord, list[dict[str, Any]]]:
        return self._record(workspace_id, conversation_id), [e.body for e in
                                                             self.repository.entries(conversation_id)]

    # -- running turns ------------------------------------------------------------------------------------------
    async def respond(self, prepared: Prepared, calls: ChatCalls) -> ConversationResponse:
        turn = prepared.turn
        async for _ in self.runner.run(turn, calls, stream=False):
            pass
        await run_sync(self._persist, prepared)
        return ConversationResponse(conversation_id=turn.conversation_id, outputs=turn.outputs, usage=turn.usage)

    async def stream(self, prepared: Prepared, calls: ChatCalls) -> AsyncIterator[ConversationEvent]:
        """started → deltas → done (with the turn's usage). The turn's first event is awaited here, so a request
        the model refuses (a capability, a tool choice) or a model that is down fails before the stream begins, with
        its own status; a later failure ends the stream with an error event. Either way nothing is persisted."""
        events = self.runner.run(prepared.turn, calls, stream=True)
        try:
            first = await anext(events)
        except BaseException:
            await events.aclose()
            raise
        return self._events(prepared, first, events)

    async def _events(self, prepared: Prepared, first: ConversationEvent,
                      events: AsyncIterator[ConversationEvent]) -> AsyncIterator[ConversationEvent]:
        turn = prepared.turn
        try:
            yield ResponseStarted(conversation_id=turn.conversation_id, created_at=rfc3339(now_us()))
            yield first
            async for event in events:
                yield event
            await run_sync(self._persist, prepared)
        except GatewayError as err:
            yield ResponseError(message=err.message, code=err.status, created_at=rfc3339(now_us()))
            return
        finally:
            await events.aclose()  # a client that left stops the model call under way
        yield ResponseDone(usage=turn.usage, created_at=rfc3339(now_us()))

    def _persist(self, prepared: Prepared) -> None:
        if not prepared.store:
            return
        now = now_us()
        new = [StoredEntry(e, now) for e in prepared.inputs + prepared.turn.outputs]
        if prepared.record is not None:
            copied = [StoredEntry(e, now) for e in prepared.copied]
            self.repository.add(replace(prepared.record, updated_at=now), copied + new)
        else:
            self.repository.append(prepared.turn.conversation_id, prepared.seq, new, now)

    # -- reads ----------------------------------------------------------------------------------------------------
    def get(self, workspace_id: str, conversation_id: str) -> ModelConversation | AgentConversation:
        return _view(self._record(workspace_id, conversation_id))

    def list(self, workspace_id: str, query: ConversationListQuery) -> ConversationsList:
        records = self.repository.list(workspace_id, offset=query.page * query.page_size, limit=query.page_size,
                                       metadata=query.metadata_pairs)
        return ConversationsList([_view(r) for r in records])

    def history(self, workspace_id: str, conversation_id: str) -> ConversationHistory:
        _, entries = self._stored(workspace_id, conversation_id)
        return ConversationHistory(conversation_id=conversation_id, entries=entries)

    def messages(self, workspace_id: str, conversation_id: str) -> ConversationMessages:
        _, entries = self._stored(workspace_id, conversation_id)
        return ConversationMessages(conversation_id=conversation_id, messages=[
            e for e in entries if e["type"] in ("message.input", "message.output")])

    def delete(self, workspace_id: str, conversation_id: str) -> None:
        if not self.repository.delete(workspace_id, conversation_id):
            raise _not_found(conversation_id)

    def _record(self, workspace_id: str, conversation_id: str) -> ConversationRecord:
        record = self.repository.get(workspace_id, conversation_id)
        if record is None:
            raise _not_found(conversation_id)
        return record


def _not_found(conversation_id: str) -> NotFound:
    return NotFound(f"conversation {conversation_id!r} not found", code="CONVERSATION_NOT_FOUND",
                    param="conversation_id")


def _check_size(count: int) -> None:
    if count > MAX_ENTRIES:
        raise BadRequest(f"a conversation holds at most {MAX_ENTRIES} entries; restart it from an earlier entry",
                         code="CONVERSATION_TOO_LONG", param="inputs")


def _args(args: Any) -> dict[str, Any]:
    return args.model_dump(mode="json", by_alias=True, exclude_unset=True) if args is not None else {}


def _inputs(inputs: Any, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The request's inputs as new entries (server ids); a function result must answer a call of this
    conversation."""
    if isinstance(inputs, str):
        return [entry("message.input", "msg", role="user", content=inputs, prefix=False)]
    known = {e["tool_call_id"] for e in history if e["type"] == "function.call"}
    out = []
    for item in inputs:
        raw = getattr(item, "content", "")
        content = raw if isinstance(raw, str) else [c.model_dump(mode="json", by_alias=True, exclude_none=True)
                                                    for c in raw]
        if item.type == "message.input":
            out.append(entry("message.input", "msg", role=item.role, content=content, prefix=item.prefix))
        elif item.type == "message.output":
            out.append(entry("message.output", "msg", role="assistant", content=content, agent_id=item.agent_id,
                             model=item.model))
        elif item.type == "function.call":
            args = item.arguments if isinstance(item.arguments, str) else json.dumps(item.arguments)
            out.append(entry("function.call", "fc", tool_call_id=item.tool_call_id, name=item.name, arguments=args,
                             agent_id=item.agent_id, model=item.model, confirmation_status=None))
            known.add(item.tool_call_id)
        else:
            if item.tool_call_id not in known:
                raise BadRequest(f"function.result answers tool_call_id {item.tool_call_id!r}, which no "
                                 "function.call of this conversation has", code="UNKNOWN_TOOL_CALL", param="inputs")
            out.append(entry("function.result", "fc", tool_call_id=item.tool_call_id, result=item.result))
    return out


def _view(record: ConversationRecord) -> ModelConversation | AgentConversation:
    common = {"id": record.id, "created_at": rfc3339(record.created_at), "updated_at": rfc3339(record.updated_at),
              "name": record.name, "description": record.description, "metadata": record.metadata}
    if record.agent_id is not None:
        return AgentConversation(agent_id=record.agent_id, agent_version=record.agent_version, **common)
    config = record.config
    return ModelConversation(model=record.model or "", instructions=config.get("instructions"),
                             tools=config.get("tools") or [], completion_args=config.get("completion_args") or {},
                             **common)
