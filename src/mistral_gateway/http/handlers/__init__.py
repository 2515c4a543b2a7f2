"""Handlers turn a request into an application-layer call: parse → call → the endpoint renders the result (by the
registry row's response kind). Authentication, scope and admission happened before (the endpoint).

Most operations need no handler of their own: ``standard`` parses what the row declares (a JSON body into
``op.request``, the query into ``op.query``, the path parameters) and calls ``Application.call``. An operation whose
input needs more (a multipart upload, query parameters beyond its model, the request's own address) has a handler
in ``HANDLERS`` (``http/handlers/registry.py``) that parses it and ends with ``call.invoke(...)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from starlette.requests import Request

from mistral_gateway.app import Application, Exchange, Result
from mistral_gateway.app.metering import Meter
from mistral_gateway.http.bodies import parse_query, read_json_object, validate_body
from mistral_gateway.http.disconnect import unless_disconnected
from mistral_gateway.registry import Operation
from mistral_gateway.services.container import Services
from mistral_gateway.services.tokens import Principal

__all__ = ["Call", "Handler", "standard"]


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
    form_read: bool = False  # a handler read a whole form body: the answer's wait is watched like a JSON body's

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

    async def invoke(self, request: Any = None, *, query: Any = None, base_url: str | None = None) -> Result:
        """The application layer's answer to this request (``request``: the parsed body, if any). A JSON body's
        wait is cut short when the client leaves."""
        guard = partial(unless_disconnected, self.request) if self.body is not None or self.form_read else None
        return await self.app.call(self.principal, self.op.id, request, body=self.body, exchange=self.exchange,
                                   guard=guard, path=self.path, query=query, base_url=base_url)


Handler = Callable[[Call], Awaitable[Result]]


async def standard(call: Call) -> Result:
    """The handler of every operation whose row says all of its input (JSON body, query model, path)."""
    op = call.op
    request = await call.json() if op.request is not None else None
    return await call.invoke(request, query=call.query() if op.query is not None else None)
