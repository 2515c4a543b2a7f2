"""Embeddings handler: parse, then the application layer."""

from __future__ import annotations

from typing import Any

from mistral_gateway.http.handlers import Call

__all__ = ["create_embeddings"]


async def create_embeddings(call: Call) -> Any:
    request = await call.json()
    return await call.app.call(call.principal, call.op.id, request, body=call.body, exchange=call.exchange)
