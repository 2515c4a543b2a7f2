"""Moderation and classification handlers: parse, then the application layer (whole JSON answers; the work stops
if the client leaves), exactly as for a non-streamed chat completion."""

from __future__ import annotations

from typing import Any

from mistral_gateway.http.handlers import Call
from mistral_gateway.http.handlers.chat import _model_call

__all__ = ["chat_classifications", "chat_moderations", "classifications", "moderations"]


async def moderations(call: Call) -> Any:
    return await _model_call(call)


async def chat_moderations(call: Call) -> Any:
    return await _model_call(call)


async def classifications(call: Call) -> Any:
    return await _model_call(call)


async def chat_classifications(call: Call) -> Any:
    return await _model_call(call)
