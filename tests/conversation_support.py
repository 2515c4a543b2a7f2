"""Fakes behind the conversation service's two interfaces: ``AgentLookup`` (agents held in a dict) and
``ChatCalls`` (scripted model answers: text, tool calls or an error, whole or as chunks)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from mistral_gateway.errors import BadRequest, NotFound
from mistral_gateway.protocol.chat import ChatCompletionRequest, ChatCompletionResponse, CompletionChunk
from mistral_gateway.protocol.conversations import ConversationAppendRequest, ConversationRequest
from mistral_gateway.services.agent_snapshot import AgentSnapshot
from mistral_gateway.services.conversations import ConversationService


@dataclass
class FakeAgents:
    """Agents by (workspace, id); versions by number (the last is the active one)."""

    agents: dict[tuple[str, str], list[AgentSnapshot]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)

    def add(self, workspace_id: str, agent: AgentSnapshot) -> AgentSnapshot:
        self.agents.setdefault((workspace_id, agent.id), []).append(agent)
        return agent

    def snapshot(self, workspace_id: str, agent_id: str, version: int | str | None = None, *,
                 include_deleted: bool = False) -> AgentSnapshot:
        versions = self.agents.get((workspace_id, agent_id))
        if versions is None or (agent_id in self.deleted and not include_deleted):
            raise NotFound(f"agent {agent_id!r} not found", code="AGENT_NOT_FOUND")
        if version is None:
            found = versions[-1]
        else:
            found = next((v for v in versions if v.version == int(version)), None)
            if found is None:
                raise BadRequest(f"agent {agent_id!r} has no version {version}", code="AGENT_VERSION_NOT_FOUND")
        return replace(found, deleted=agent_id in self.deleted)


def agent(agent_id: str, name: str, *, version: int = 0, handoffs: list[str] | None = None,
          tools: list[dict[str, Any]] | None = None, instructions: str | None = None,
          model: str = "fake-model") -> AgentSnapshot:
    return AgentSnapshot(id=agent_id, version=version, name=name, model=model, instructions=instructions,
                         description=f"{name} helps", tools=tools or [], handoffs=handoffs or [])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def turn(svc: ConversationService, prepare: Any, chat: ScriptedChat) -> Any:
    """A prepared turn (the service's coroutine) run whole."""
    async def go() -> Any:
        return await svc.respond(await prepare, chat)
    return run(go())


def events(svc: ConversationService, prepare: Any, chat: ScriptedChat) -> list[Any]:
    """A prepared turn streamed: all its events."""
    async def go() -> list[Any]:
        return [e async for e in await svc.stream(await prepare, chat)]
    return run(go())


def start(**body: Any) -> ConversationRequest:
    return ConversationRequest.model_validate(body)


def append(**body: Any) -> ConversationAppendRequest:
    return ConversationAppendRequest.model_validate(body)


Reply = str | list[tuple[str, str]] | Exception  # text, tool calls (name, JSON arguments), or a failure


@dataclass
class ScriptedChat:
    """Answers each model call with the next scripted reply; keeps the requests it got."""

    replies: list[Reply]
    requests: list[ChatCompletionRequest] = field(default_factory=list)
    ids: itertools.count = field(default_factory=itertools.count)
    closed: int = 0  # streams closed (read to their end or not)

    def _next(self, request: ChatCompletionRequest) -> Reply:
        self.requests.append(request)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _calls(self, reply: list[tuple[str, str]]) -> list[dict[str, Any]]:
        return [{"id": f"call{next(self.ids):05d}", "type": "function", "index": i,
                 "function": {"name": name, "arguments": args}} for i, (name, args) in enumerate(reply)]

    async def complete(self, request: ChatCompletionRequest) -> ChatCompletionResponse:
        reply = self._next(request)
        message = ({"role": "assistant", "content": reply} if isinstance(reply, str)
                   else {"role": "assistant", "content": "", "tool_calls": self._calls(reply)})
        return ChatCompletionResponse.model_validate({
            "id": "x", "model": request.model, "created": 0, "usage": {"prompt_tokens": 10, "completion_tokens": 3,
                                                                        "total_tokens": 13},
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "stop" if isinstance(reply, str) else "tool_calls"}]})

    async def stream(self, request: ChatCompletionRequest) -> AsyncIterator[CompletionChunk]:
        reply = self._next(request)
        return self._chunks(request.model, reply)

    async def _chunks(self, model: str, reply: Reply) -> AsyncIterator[CompletionChunk]:
        def chunk(delta: dict[str, Any], usage: dict[str, int] | None = None) -> CompletionChunk:
            return CompletionChunk.model_validate({"id": "x", "created": 0, "model": model, "usage": usage,
                                                   "choices": [{"index": 0, "delta": delta}]})

        try:
            yield chunk({"role": "assistant", "content": ""})
            if isinstance(reply, str):
                for at in range(0, len(reply), 4):
                    yield chunk({"content": reply[at:at + 4]})
            else:
                yield chunk({"tool_calls": self._calls(reply)})
            yield chunk({"content": ""}, {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13})
        finally:
            self.closed += 1
