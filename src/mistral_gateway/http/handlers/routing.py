"""Sending a request to its model's targets when the model routes to upstreams (else straight to ``local``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mistral_gateway.http.handlers import Call
from mistral_gateway.http.results import RawEvents, RawJSON
from mistral_gateway.services.completions import resolve_text_model
from mistral_gateway.upstreams import Relayed, RelayedStream
from mistral_gateway.upstreams.router import Kind

__all__ = ["routed"]


async def routed(call: Call, kind: Kind, model: str, *, stream: bool, capability: str | None,
                 local: Callable[..., Awaitable[Any]]) -> Any:
    services = call.services
    entry = services.models.catalog.resolve(model)
    if not services.router.routes(entry):
        return await local()
    assert entry is not None and call.body is not None
    if capability is not None:
        resolve_text_model(services.models.catalog, model, capability)  # same 400 as a local model would give
    result = await services.router.forward(kind, entry, call.body, stream=stream, usage=call.meter, local=local)
    if isinstance(result, Relayed):
        return RawJSON(result.body)
    if isinstance(result, RelayedStream):
        return RawEvents(result.chunks)
    return result
