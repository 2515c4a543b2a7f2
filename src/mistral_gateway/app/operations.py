"""The model operations: resolve the model (local, or its upstream routes with fallback), run it, fill the meter;
and ``OPERATIONS``, every operation the application layer runs (these, and ``app.resources``), by registry id.

Each takes a ``Context`` and the parsed request model and returns a result (``app.results``) of the types its
return annotation declares (checked against its registry row at startup: ``app.kinds``); nothing here knows
whether the caller is an HTTP request or a job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from anyio.to_thread import run_sync

from mistral_gateway.app.agents import AGENTS, agents_of
from mistral_gateway.app.context import Context, Guard, Work
from mistral_gateway.app.conversations import CONVERSATIONS
from mistral_gateway.app.fine_tuned import FINE_TUNED_MODELS
from mistral_gateway.app.fine_tuning import FINE_TUNING
from mistral_gateway.app.libraries import LIBRARIES
from mistral_gateway.app.metering import meter_completion, meter_json_usage
from mistral_gateway.app.resources import RESOURCES
from mistral_gateway.app.results import RawEvents, RawJSON, StreamResult
from mistral_gateway.app.validation import validate_body
from mistral_gateway.config import ModelEntry
from mistral_gateway.protocol.agents import AgentsCompletionRequest
from mistral_gateway.protocol.audio import TranscriptionEvent, TranscriptionRequest, TranscriptionResponse
from mistral_gateway.protocol.chat import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChunk,
    FIMCompletionRequest,
)
from mistral_gateway.protocol.classifiers import ChatClassificationRequest, ChatModerationRequest, ClassificationRequest
from mistral_gateway.protocol.embeddings import EmbeddingRequest
from mistral_gateway.protocol.ocr import DEFAULT_OCR_MODEL, OCRRequest
from mistral_gateway.services.completions import resolve_text_model
from mistral_gateway.services.transcription import AudioRequest
from mistral_gateway.upstreams import Relayed, RelayedStream

__all__ = ["OPERATIONS", "Context", "Guard", "routed"]

Completion = ChatCompletionResponse | StreamResult[CompletionChunk] | RawJSON | RawEvents


async def chat_completion(ctx: Context, request: ChatCompletionRequest) -> Completion:
    return await _completion(ctx, request, ctx.services.chat, "completion_chat")


async def fim_completion(ctx: Context, request: FIMCompletionRequest) -> Completion:
    return await _completion(ctx, request, ctx.services.fim, "completion_fim")


async def agent_completion(ctx: Context, request: AgentsCompletionRequest) -> Completion:
    """The chat completion the agent amounts to (``AgentService.completion_body``), run as chat's row runs it: routed
    to the agent's model, locally or upstream (the chat body is what an upstream gets), on this call's meter."""
    body = await run_sync(agents_of(ctx).completion_body, ctx.workspace_id, request)
    chat = validate_body(ChatCompletionRequest, body)
    chat_ctx = dataclasses.replace(ctx, op=ctx.services.registry.get("create_chat_completions"), raw=body,
                                   request=chat)
    return await chat_completion(chat_ctx, chat)


async def _completion(ctx: Context, request: Any, service: Any, capability: str) -> Any:
    async def local(model: str | None = None, resolved: ModelEntry | None = None) -> Any:
        req = request if model is None else request.model_copy(update={"model": model})
        ctx.meter.model = req.model
        if req.stream:
            return StreamResult(await service.stream(req, resolved))  # metered as it streams
        return meter_completion(ctx.meter, await ctx.guarded(service.complete(req, resolved)))

    return await routed(ctx, request.model, stream=request.stream, capability=capability, local=local)


async def embeddings(ctx: Context, request: EmbeddingRequest) -> RawJSON:
    async def local(model: str | None = None, _: ModelEntry | None = None) -> RawJSON:
        req = request if model is None else request.model_copy(update={"model": model})
        ctx.meter.model = req.model
        body = await ctx.services.embeddings.create(ctx.principal.workspace_id, req)
        return RawJSON(meter_json_usage(ctx.meter, body))

    return await routed(ctx, request.model, stream=False, capability=None, local=local)


async def moderations(ctx: Context, request: ClassificationRequest) -> RawJSON:
    return await _classifier(ctx, request, ctx.services.classifiers.moderate, "moderation")


async def chat_moderations(ctx: Context, request: ChatModerationRequest) -> RawJSON:
    return await _classifier(ctx, request, ctx.services.classifiers.moderate_chat, "moderation")


async def classifications(ctx: Context, request: ClassificationRequest) -> RawJSON:
    return await _classifier(ctx, request, ctx.services.classifiers.classify, "classification")


async def chat_classifications(ctx: Context, request: ChatClassificationRequest) -> RawJSON:
    return await _classifier(ctx, request, ctx.services.classifiers.classify_chat, "classification")


async def _classifier(ctx: Context, request: Any, work: Callable[..., Awaitable[Any]], capability: str) -> RawJSON:
    async def local(model: str | None = None, resolved: ModelEntry | None = None) -> RawJSON:
        req = request if model is None else request.model_copy(update={"model": model})
        ctx.meter.model = req.model
        scored = await ctx.guarded(work(req, resolved))
        ctx.meter.prompt_tokens = scored.tokens  # the encoder's tokens, over all chunks
        return RawJSON(scored.body)

    return await routed(ctx, request.model, stream=False, capability=capability, local=local)


async def ocr(ctx: Context, request: OCRRequest) -> RawJSON:
    async def local(model: str | None = None, _: ModelEntry | None = None) -> RawJSON:
        req = request if model is None else request.model_copy(update={"model": model})
        ctx.meter.model = req.model or DEFAULT_OCR_MODEL
        done = await ctx.guarded(ctx.services.ocr.process(ctx.workspace_id, req))
        if done.usage is not None:  # the document annotation's chat tokens
            ctx.meter.prompt_tokens, ctx.meter.completion_tokens = done.usage.prompt_tokens, \
                done.usage.completion_tokens
        return RawJSON(done.body)

    return await routed(ctx, request.model or DEFAULT_OCR_MODEL, stream=False, capability="ocr", local=local)


async def transcription(ctx: Context, request: AudioRequest | TranscriptionRequest) -> TranscriptionResponse:
    audio = request if isinstance(request, AudioRequest) else AudioRequest(request)  # a batch line: JSON only
    ctx.meter.model = audio.request.model
    return meter_completion(ctx.meter, await ctx.guarded(  # its audio seconds metered as prompt tokens
        ctx.services.transcription.transcribe(ctx.workspace_id, audio.request, audio.upload)))


async def streaming_transcription(ctx: Context, request: AudioRequest) -> StreamResult[TranscriptionEvent]:
    ctx.meter.model = request.request.model
    events = await ctx.services.transcription.stream(ctx.workspace_id, request.request, request.upload)
    return StreamResult(events, done_marker=False, event_names=True)


async def routed(ctx: Context, model: str, *, stream: bool, capability: str | None,
                 local: Callable[..., Awaitable[Any]]) -> Any:
    """``local()``'s result for a locally served model; else the first of the model's targets that answers (the
    row's ``upstream`` kind and paths say how it is forwarded): ``RawJSON``, ``RawEvents`` or ``local(model)``'s.
    A name the catalog does not know may be a fine-tuned model of the caller's workspace: ``local(None, entry)``."""
    services = ctx.services
    entry = services.models.catalog.resolve(model)  # configured models: no I/O
    if entry is None:
        tuned = await workspace_model(ctx, model)
        return await (local() if tuned is None else local(None, tuned))
    if not services.router.routes(entry):
        return await local()
    assert entry is not None
    if capability is not None:
        resolve_text_model(services.models.catalog, model, capability)  # same 400 as a local model would give
    result = await services.router.forward(ctx.op, entry, ctx.body, stream=stream, usage=ctx.meter, local=local)
    if isinstance(result, Relayed):
        return RawJSON(result.body)
    if isinstance(result, RelayedStream):
        return RawEvents(result.chunks)
    return result


async def workspace_model(ctx: Context, model: str) -> ModelEntry | None:
    """``model`` as a fine-tuned model of the caller's workspace (cached; the database on a miss, off the event
    loop); None: it is not one. An archived model is a 400 saying how to unarchive it."""
    tuned = ctx.services.models.fine_tuned
    resolution = tuned.cached(ctx.workspace_id, model)
    if resolution is None:
        resolution = await run_sync(tuned.resolve, ctx.workspace_id, model)
    return resolution.value()


# Every operation the application layer runs, by registry id; the return annotations say what each answers
# (checked against the rows at startup: ``app.kinds``).
OPERATIONS: dict[str, Work] = {
    "create_chat_completions": chat_completion,
    "create_fim_completions": fim_completion,
    "create_embeddings": embeddings,
    "moderations": moderations,
    "chat_moderations": chat_moderations,
    "classifications": classifications,
    "chat_classifications": chat_classifications,
    "ocr": ocr,
    "create_transcription": transcription,
    "create_streaming_transcription": streaming_transcription,
    "create_agent_completion": agent_completion,
    **RESOURCES,
    **AGENTS,
    **CONVERSATIONS,
    **FINE_TUNED_MODELS,
    **FINE_TUNING,
    **LIBRARIES,
}
