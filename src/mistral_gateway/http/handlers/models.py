"""Models handlers."""

from __future__ import annotations

from anyio.to_thread import run_sync

from mistral_gateway.app.results import RawJSON
from mistral_gateway.http.handlers import Call
from mistral_gateway.protocol.models import BaseModelCard, DeleteModelOut, FTModelCard

__all__ = ["delete_model", "list_models", "retrieve_model"]


async def list_models(call: Call) -> RawJSON:
    return await call.run(lambda: _list_models(call))


async def _list_models(call: Call) -> RawJSON:
    query = call.query()
    models = call.services.models
    body = models.list_json_cached(call.workspace_id, query)
    if body is None:
        body = await run_sync(models.list_json, call.workspace_id, query)
    return RawJSON(body)


async def retrieve_model(call: Call) -> BaseModelCard | FTModelCard:
    return await call.run(lambda: _retrieve_model(call))


async def _retrieve_model(call: Call) -> BaseModelCard | FTModelCard:
    call.meter.model = call.path["model_id"]
    card = call.services.models.catalog.card(call.path["model_id"])  # base models: no I/O, no thread hop
    if card is not None:
        return card
    return await run_sync(call.services.models.retrieve, call.workspace_id, call.path["model_id"])


async def delete_model(call: Call) -> DeleteModelOut:
    return await call.run(lambda: _delete_model(call))


async def _delete_model(call: Call) -> DeleteModelOut:
    call.meter.model = call.path["model_id"]
    return await run_sync(call.services.models.delete, call.workspace_id, call.path["model_id"])
