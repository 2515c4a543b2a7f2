"""Handlers: one async function per implemented operation, bound here by operation id (``HANDLERS``). A handler
parses the request into the operation's model and calls the application layer; the endpoint renders the result."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request

from mistral_gateway.app import Application, Exchange
from mistral_gateway.app.metering import Meter
from mistral_gateway.http.bodies import parse_query, read_json_object, validate_body
from mistral_gateway.registry import Operation
from mistral_gateway.services.container import Services
from mistral_gateway.services.tokens import Principal

__all__ = ["Call", "Handler"]


@dataclass(slots=True)
class Call:
    op: Operation
    request: Request
    principal: Principal
    path: dict[str, str]
    app: Application
    exchange: Exchange
    dialect: str
    old_format: bool = False
    body: dict[str, Any] | None = None  # the JSON body as sent, once read (upstreams get it unchanged)

    @property
    def services(self) -> Services:
        return self.app.services

    @property
    def meter(self) -> Meter:
        return self.exchange.meter

    @property
    def workspace_id(self) -> str:
        return self.principal.workspace_id

    def query(self) -> Any:
        """The query string validated by the operation's query model (old-format path params excluded)."""
        assert self.op.query is not None, f"{self.op.id} declares no query model"
        return parse_query(self.op.query, self.request.query_params, frozenset(self.path))

    async def json(self) -> Any:
        assert self.op.request is not None, f"{self.op.id} declares no request model"
        if self.body is None:
            self.body = await read_json_object(self.request, self.services.settings.max_json_body_bytes)
        return validate_body(self.op.request, self.body)

    def base_url(self) -> str:
        return self.services.settings.public_base_url or str(self.request.base_url)

    async def run(self, work: Callable[[], Awaitable[Any]]) -> Any:
        """Service work for an operation that is not a model call, metered and recorded like one."""
        return await self.app.run(self.exchange, work)


Handler = Callable[[Call], Awaitable[BaseModel | Any]]
