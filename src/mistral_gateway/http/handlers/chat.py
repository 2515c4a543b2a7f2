"""Chat and FIM completion handlers: JSON, or SSE when the body says ``stream: true``."""

from __future__ import annotations

from mistral_gateway.http.handlers import Call
from mistral_gateway.http.results import StreamResult
from mistral_gateway.protocol.chat import ChatCompletionResponse

__all__ = ["create_chat_completions", "create_fim_completions"]


async def create_chat_completions(call: Call) -> ChatCompletionResponse | StreamResult:
    request = await call.json()
    if request.stream:
        return StreamResult(await call.services.chat.stream(request))
    return await call.services.chat.complete(request)


async def create_fim_completions(call: Call) -> ChatCompletionResponse | StreamResult:
    request = await call.json()
    if request.stream:
        return StreamResult(await call.services.fim.stream(request))
    return await call.services.fim.complete(request)
