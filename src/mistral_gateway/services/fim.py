"""Fill-in-the-middle on local engines, through each model's own FIM tokens (``fim_template`` in the catalog)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from mistral_gateway.config import ModelEntry
from mistral_gateway.engines.base import EngineError, SamplingParams, TextEngine
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.errors import BadRequest
from mistral_gateway.protocol.chat import ChatCompletionResponse, CompletionChunk, FIMCompletionRequest
from mistral_gateway.services.completions import (
    completion_id,
    engine_errors,
    primed,
    resolve_text_model,
    response,
    sampling,
    stream_chunks,
)
from mistral_gateway.services.models import ModelCatalog

__all__ = ["FimService"]


class FimService:
    def __init__(self, catalog: ModelCatalog, engines: EngineManager,
                 clock: Callable[[], float] = time.time) -> None:
        self._catalog = catalog
        self._engines = engines
        self._clock = clock

    async def complete(self, request: FIMCompletionRequest,
                       resolved: ModelEntry | None = None) -> ChatCompletionResponse:
        """``resolved``: the model's entry when the application layer resolved it (a workspace's fine-tuned model)."""
        engine, prompt, params = await self._prepare(request, resolved)
        try:
            generation = await engine.complete(prompt, params)
        except EngineError as exc:
            raise engine_errors(exc) from exc
        return response(completion_id(), request.model, int(self._clock()), [generation])

    async def stream(self, request: FIMCompletionRequest,
                     resolved: ModelEntry | None = None) -> AsyncIterator[CompletionChunk]:
        engine, prompt, params = await self._prepare(request, resolved)
        first = await primed(engine.stream(prompt, params))
        return stream_chunks(completion_id(), request.model, int(self._clock()), [lambda: first])

    async def _prepare(self, request: FIMCompletionRequest,
                       resolved: ModelEntry | None) -> tuple[TextEngine, str, SamplingParams]:
        entry = resolve_text_model(self._catalog, request.model, "completion_fim", resolved)
        if not entry.fim_template:
            raise BadRequest(f"model {request.model!r} has no FIM template configured (capability "
                             "'completion_fim')", code="UNSUPPORTED_MODEL_CAPABILITY", param="model")
        prompt = entry.fim_template.replace("{prompt}", request.prompt).replace("{suffix}", request.suffix or "")
        params = sampling(entry, temperature=request.temperature, top_p=request.top_p, max_tokens=request.max_tokens,
                          stop=request.stop_list, seed=request.random_seed, min_tokens=request.min_tokens)
        try:
            engine = await self._engines.text(entry)
        except EngineError as exc:
            raise engine_errors(exc) from exc
        return engine, prompt, params
