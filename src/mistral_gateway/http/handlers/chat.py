"""Chat and FIM completion handlers: JSON, or SSE when the body says ``stream: true``; routed models go to
their upstreams."""

from __future__ import annotations

from typing import Any

from mistral_gateway.http.disconnect import unless_disconnected
from mistral_gateway.http.handlers import Call
from mistral_gateway.http.handlers.routing import routed
from mistral_gateway.http.metering import meter_completion
from mistral_gateway.http.results import StreamResult

__all__ = ["create_chat_completions", "create_fim_completions"]


async def create_chat_completions(call: Call) -> Any:
    return await _completion(call, "chat", "completion_chat")


async def create_fim_completions(call: Call) -> Any:
    return await _completion(call, "fim", "completion_fim")


async def _completion(call: Call, kind: Any, capability: str) -> Any:
    request = await call.json()
    service = call.services.chat if kind == "chat" else call.services.fim

    async def local(model: str | None = None) -> Any:
        req = request if model is None else request.model_copy(update={"model": model})
        call.meter.model = req.model
        if req.stream:
            return StreamResult(await service.stream(req))  # metered as it streams
        return meter_completion(call.meter, await unless_disconnected(call.request, service.complete(req)))

    return await routed(call, kind, request.model, stream=request.stream, capability=capability, local=local)
