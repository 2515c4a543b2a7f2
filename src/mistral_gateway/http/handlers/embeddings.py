"""Embeddings handlers."""

from __future__ import annotations

from mistral_gateway.http.handlers import Call
from mistral_gateway.http.results import RawJSON
from mistral_gateway.protocol.embeddings import EmbeddingRequest

__all__ = ["create_embeddings"]


async def create_embeddings(call: Call) -> RawJSON:
    request: EmbeddingRequest = await call.json()
    return RawJSON(await call.services.embeddings.create(call.workspace_id, request))
