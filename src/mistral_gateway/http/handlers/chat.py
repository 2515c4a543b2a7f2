"""Chat and FIM completion handlers: parse, then the application layer (JSON, or SSE when ``stream: true``)."""

from __future__ import annotations

from functools import partial
from typing import Any

from mistral_gateway.http.disconnect import unless_disconnected
from mistral_gateway.http.handlers import Call

__all__ = ["create_chat_completions", "create_fim_completions"]


async def create_chat_completions(call: Call) -> Any:
    return await _model_call(call)


async def create_fim_completions(call: Call) -> Any:
    return await _model_call(call)


async def _model_call(call: Call) -> Any:
    request = await call.json()
    return await call.app.call(call.principal, call.op.id, request, body=call.body, exchange=call.exchange,
                               guard=partial(unless_disconnected, call.request))
