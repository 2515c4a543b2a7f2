"""Embeddings handlers; routed models go to their upstreams."""

from __future__ import annotations

from typing import Any

from mistral_gateway.http.handlers import Call
from mistral_gateway.http.handlers.routing import routed
from mistral_gateway.http.metering import meter_json_usage
from mistral_gateway.http.results import RawJSON
from mistral_gateway.protocol.embeddings import EmbeddingRequest

__all__ = ["create_embeddings"]


async def create_embeddings(call: Call) -> Any:
    request: EmbeddingRequest = await call.json()

    async def local(model: str | None = None) -> RawJSON:
        req = request if model is None else request.model_copy(update={"model": model})
        call.meter.model = req.model
        return RawJSON(meter_json_usage(call.meter, await call.services.embeddings.create(call.workspace_id, req)))

    return await routed(call, "embeddings", request.model, stream=False, capability=None, local=local)
