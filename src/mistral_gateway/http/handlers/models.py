"""Models handlers."""

from __future__ import annotations

from anyio.to_thread import run_sync

from mistral_gateway.http.handlers import Call
from mistral_gateway.protocol.models import BaseModelCard, DeleteModelOut, FTModelCard, ModelList

__all__ = ["delete_model", "list_models", "retrieve_model"]


async def list_models(call: Call) -> ModelList:
    query = call.query()
    return await run_sync(call.services.models.list, call.workspace_id, query)


async def retrieve_model(call: Call) -> BaseModelCard | FTModelCard:
    return await run_sync(call.services.models.retrieve, call.workspace_id, call.path["model_id"])


async def delete_model(call: Call) -> DeleteModelOut:
    return await run_sync(call.services.models.delete, call.workspace_id, call.path["model_id"])
