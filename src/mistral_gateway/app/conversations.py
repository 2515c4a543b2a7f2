"""The conversation operations: the service prepares and runs turns; the model calls of a turn go through the
chat completion operation (``RoutedChat``), so a conversation's model is routed, local or upstream, exactly as
``POST /v1/chat/completions`` would route it. The exchange was admitted once; its meter gets the turn's usage
summed over its model calls (non-streamed: from the response; streamed: from ``conversation.response.done``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
from anyio.to_thread import run_sync

from mistral_gateway.app import operations as chat_ops  # the module: it imports this one to list every operation
from mistral_gateway.app.context import Context, Work
from mistral_gateway.app.metering import Meter
from mistral_gateway.app.results import NoContent, RawEvents, RawJSON, StreamResult
from mistral_gateway.errors import BadGateway
from mistral_gateway.protocol.chat import ChatCompletionRequest, ChatCompletionResponse, CompletionChunk
from mistral_gateway.protocol.conversations import (
    AgentConversation,
    ConversationAppendRequest,
    ConversationEvent,
    ConversationHistory,
    ConversationMessages,
    ConversationRequest,
    ConversationResponse,
    ConversationRestartRequest,
    ConversationsList,
    ModelConversation,
)
from mistral_gateway.services.conversations import ConversationService, Prepared

__all__ = ["CONVERSATIONS", "RoutedChat", "chat_chunks"]

Answer = ConversationResponse | StreamResult[ConversationEvent]


@dataclass(slots=True)
class RoutedChat:
    """``ChatCalls`` over the chat completion operation, on behalf of the conversation's caller."""

    ctx: Context

    def _sub(self, request: ChatCompletionRequest) -> Context:
        ctx = self.ctx
        # no guard of its own: the conversation's guard already covers the whole turn
        return Context(ctx.services, ctx.services.registry.get("create_chat_completions"), ctx.principal, Meter(),
                       None, request, None, base_url=ctx.base_url)

    async def complete(self, request: ChatCompletionRequest) -> ChatCompletionResponse:
        sub = self._sub(request)
        result = await chat_ops.chat_completion(sub, request)
        meter = self.ctx.meter
        meter.model = sub.meter.model or request.model
        if isinstance(result, RawJSON):  # an upstream's answer
            result = ChatCompletionResponse.model_validate_json(result.body)
        assert isinstance(result, ChatCompletionResponse)
        # summed call by call: a turn that fails after a handoff still bills the calls it made
        meter.prompt_tokens += result.usage.prompt_tokens
        meter.completion_tokens += result.usage.completion_tokens
        return result

    async def stream(self, request: ChatCompletionRequest) -> AsyncIterator[CompletionChunk]:
        request = request.model_copy(update={"stream": True})
        sub = self._sub(request)
        result = await chat_ops.chat_completion(sub, request)
        self.ctx.meter.model = sub.meter.model or request.model
        if isinstance(result, RawEvents):
            return chat_chunks(result.chunks)
        assert isinstance(result, StreamResult)
        return result.chunks


async def chat_chunks(chunks: AsyncIterator[bytes]) -> AsyncIterator[CompletionChunk]:
    """An upstream's framed chat stream as chunks (``data:`` lines; ``[DONE]`` and comments skipped)."""
    pending = b""
    async for data in chunks:
        pending += data
        *events, pending = pending.replace(b"\r\n", b"\n").split(b"\n\n")
        for event in events:
            for line in event.split(b"\n"):
                if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
                    try:
                        yield CompletionChunk.model_validate(orjson.loads(line[5:]))
                    except ValueError:
                        raise BadGateway("the upstream sent a chat stream event this server cannot read",
                                         code="UPSTREAM_BAD_EVENT") from None


def _service(ctx: Context) -> ConversationService:
    assert ctx.services.conversations is not None, "build_services wires the conversations service"
    return ctx.services.conversations


async def _run(ctx: Context, prepared: Prepared, stream: bool) -> Answer:
    service, calls = _service(ctx), RoutedChat(ctx)
    if stream:
        return StreamResult(await service.stream(prepared, calls), done_marker=False, event_names=True)
    return await ctx.guarded(service.respond(prepared, calls))  # the meter summed each model call's usage


async def create_conversation(ctx: Context, request: ConversationRequest) -> Answer:
    return await _run(ctx, await _service(ctx).start(ctx.workspace_id, request), request.stream)


async def append_conversation(ctx: Context, request: ConversationAppendRequest) -> Answer:
    prepared = await _service(ctx).append(ctx.workspace_id, ctx.path["conversation_id"], request)
    return await _run(ctx, prepared, request.stream)


async def restart_conversation(ctx: Context, request: ConversationRestartRequest) -> Answer:
    prepared = await _service(ctx).restart(ctx.workspace_id, ctx.path["conversation_id"], request)
    return await _run(ctx, prepared, request.stream)


async def list_conversations(ctx: Context, _: None) -> ConversationsList:
    return await run_sync(_service(ctx).list, ctx.workspace_id, ctx.query)


async def get_conversation(ctx: Context, _: None) -> ModelConversation | AgentConversation:
    return await run_sync(_service(ctx).get, ctx.workspace_id, ctx.path["conversation_id"])


async def delete_conversation(ctx: Context, _: None) -> NoContent:
    await run_sync(_service(ctx).delete, ctx.workspace_id, ctx.path["conversation_id"])
    return NoContent()


async def conversation_history(ctx: Context, _: None) -> ConversationHistory:
    return await run_sync(_service(ctx).history, ctx.workspace_id, ctx.path["conversation_id"])


async def conversation_messages(ctx: Context, _: None) -> ConversationMessages:
    return await run_sync(_service(ctx).messages, ctx.workspace_id, ctx.path["conversation_id"])


CONVERSATIONS: dict[str, Work] = {
    "create_conversation": create_conversation,
    "list_conversations": list_conversations,
    "get_conversation": get_conversation,
    "update_conversation": append_conversation,
    "delete_conversation": delete_conversation,
    "get_conversation_history": conversation_history,
    "get_conversation_messages": conversation_messages,
    "restart_conversation": restart_conversation,
}
