"""Shared by chat and FIM: model resolution, sampling parameters, and assembling responses and stream chunks."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from mistral_gateway.config import ModelEntry
from mistral_gateway.engines.base import (
    ContextOverflow,
    Delta,
    EngineBusy,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    Generation,
    InvalidInput,
    SamplingParams,
)
from mistral_gateway.errors import BadGateway, BadRequest, GatewayError, NotFound, ServiceUnavailable
from mistral_gateway.protocol.chat import (
    ChatCompletionChoice,
    ChatCompletionResponse,
    ChunkChoice,
    CompletionChunk,
    DeltaMessage,
    OutputTextChunk,
    OutputThinkChunk,
    ResponseMessage,
    ResponseToolCall,
    UsageInfo,
)
from mistral_gateway.services.models import ModelCatalog

__all__ = ["completion_id", "engine_errors", "primed", "resolve_text_model", "response", "stream_chunks"]

DEFAULT_TEMPERATURE = 0.7
ENGINE_RETRY_AFTER = 2  # seconds, on an engine failure: a worker restart or a transient fault usually clears by then


def completion_id() -> str:
    return uuid.uuid4().hex


def resolve_text_model(catalog: ModelCatalog, name: str, capability: str,
                       resolved: ModelEntry | None = None) -> ModelEntry:
    """``name``'s entry, checked to serve ``capability``: ``resolved`` when the application layer already resolved
    the name in the caller's workspace (a fine-tuned model), else the catalog's."""
    entry = resolved or catalog.resolve(name)
    if entry is None:
        shown = name if len(name) <= 100 else f"{name[:100]}…"  # never echo a huge value
        raise NotFound(f"model {shown!r} not found; GET /v1/models lists the available ones", code="MODEL_NOT_FOUND",
                       param="model")
    if entry.engine == "none" and not any(r.upstream != "local" for r in entry.routes):
        does = f" (its family's capabilities: {', '.join(entry.capabilities)})" if entry.capabilities else ""
        raise BadRequest(f"model {name!r} does not support {capability!r} here{does}: no local engine serves it; "
                         "an operator can route its family to an upstream", code="UNSUPPORTED_MODEL_CAPABILITY",
                         param="model")
    if capability not in entry.capabilities:
        raise BadRequest(f"model {name!r} does not support {capability!r}", code="UNSUPPORTED_MODEL_CAPABILITY",
                         param="model")
    return entry


def sampling(entry: ModelEntry, *, temperature: float | None, top_p: float, max_tokens: int | None,
             stop: tuple[str, ...], seed: int | None, min_tokens: int | None, **extra: object) -> SamplingParams:
    if temperature is None:
        temperature = entry.default_model_temperature if entry.default_model_temperature is not None \
            else DEFAULT_TEMPERATURE
    if min_tokens and max_tokens is not None and min_tokens > max_tokens:
        raise BadRequest("min_tokens must not exceed max_tokens", param="min_tokens")
    return SamplingParams(max_tokens=max_tokens, min_tokens=min_tokens or 0, temperature=temperature, top_p=top_p,
                          stop=stop, seed=seed, **extra)  # type: ignore[arg-type]


def engine_errors(exc: EngineError) -> GatewayError:
    """Engine failures in gateway terms: overflow is the caller's mistake; busy, restarting and timed out are 503s
    worth retrying; any other engine failure is a 502 (the model server behind us failed), never a 500."""
    if isinstance(exc, ContextOverflow):
        return BadRequest(str(exc), code="CONTEXT_LENGTH_EXCEEDED", param="max_tokens")
    if isinstance(exc, InvalidInput):  # e.g. an image whose header passed but which the engine cannot decode
        return BadRequest(str(exc), code="INVALID_IMAGE", param="messages")
    if isinstance(exc, EngineBusy):
        return ServiceUnavailable(str(exc), retry_after=exc.retry_after, code="MODEL_BUSY")
    if isinstance(exc, EngineTimeout):
        return ServiceUnavailable(str(exc), retry_after=exc.retry_after, code="MODEL_TIMEOUT")
    if isinstance(exc, EngineUnavailable):  # transient: e.g. the model's worker process is being restarted
        return ServiceUnavailable(str(exc), retry_after=exc.retry_after, code="MODEL_RESTARTING")
    return BadGateway(f"inference failed: {exc}", code="ENGINE_ERROR",
                      headers={"Retry-After": str(ENGINE_RETRY_AFTER)})


def response(cid: str, model: str, created: int, generations: list[Generation],
             messages: list[ResponseMessage] | None = None) -> ChatCompletionResponse:
    choices = [
        ChatCompletionChoice(index=i, message=(messages[i] if messages else ResponseMessage(content=g.text)),
                             finish_reason=g.finish_reason)
        for i, g in enumerate(generations)
    ]
    prompt = generations[0].prompt_tokens if generations else 0  # the prompt is billed once for n choices
    completion = sum(g.completion_tokens for g in generations)
    return ChatCompletionResponse(id=cid, model=model, created=created, choices=choices,
                                  usage=UsageInfo(prompt_tokens=prompt, completion_tokens=completion,
                                                  total_tokens=prompt + completion))


async def primed(stream: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
    """Pull the first delta now, so errors before any output (overflow, busy) surface as HTTP errors."""
    try:
        first = await anext(stream)
    except EngineError as exc:
        await stream.aclose()
        raise engine_errors(exc) from exc

    async def rest() -> AsyncIterator[Delta]:
        yield first
        async for delta in stream:
            yield delta

    return rest()


def _thinking(text: str) -> list[Any]:
    """A reasoning piece as Mistral streams it: a one-chunk list (answer pieces stay plain strings)."""
    return [OutputThinkChunk(thinking=[OutputTextChunk(text=text)])]


async def stream_chunks(cid: str, model: str, created: int,
                        streams: Sequence[Callable[[], AsyncIterator[Delta]]]) -> AsyncIterator[CompletionChunk]:
    """Mistral's chunk sequence per choice: role first, content pieces, then finish_reason; the very last chunk
    carries the usage. ``streams`` are started one after another (n > 1 choices)."""
    prompt_tokens, completion_tokens = 0, 0
    for index, make in enumerate(streams):
        yield CompletionChunk(id=cid, created=created, model=model,
                              choices=[ChunkChoice(index=index, delta=DeltaMessage(role="assistant", content=""))])
        try:
            async for delta in make():
                if delta.finish_reason is None:
                    if delta.text:
                        content = _thinking(delta.text) if delta.thinking else delta.text
                        piece = ChunkChoice(index=index, delta=DeltaMessage(content=content))
                        yield CompletionChunk(id=cid, created=created, model=model, choices=[piece])
                    continue
                prompt_tokens = delta.prompt_tokens or prompt_tokens
                completion_tokens += delta.completion_tokens or 0
                if delta.tool_calls:  # whole calls, in one delta, before the finishing chunk
                    calls = [ResponseToolCall(**c) for c in delta.tool_calls]
                    piece = ChunkChoice(index=index, delta=DeltaMessage(content="", tool_calls=calls))
                    yield CompletionChunk(id=cid, created=created, model=model, choices=[piece])
                last = index == len(streams) - 1
                usage = UsageInfo(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                                  total_tokens=prompt_tokens + completion_tokens) if last else None
                yield CompletionChunk(id=cid, created=created, model=model, usage=usage,
                                      choices=[ChunkChoice(index=index, delta=DeltaMessage(content=delta.text),
                                                           finish_reason=delta.finish_reason)])
        except EngineError as exc:
            raise engine_errors(exc) from exc
