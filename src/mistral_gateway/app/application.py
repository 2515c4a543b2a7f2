"""``Application``: the one path every caller takes to run an operation (see the package docstring)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from mistral_gateway.app.context import NO_PATH, Context, Guard, Work
from mistral_gateway.app.kinds import check_operations
from mistral_gateway.app.metering import Exchange, Metering
from mistral_gateway.app.operations import OPERATIONS
from mistral_gateway.app.results import RawEvents, Result, StreamResult, error_body, json_of
from mistral_gateway.app.validation import validate_body
from mistral_gateway.errors import BadRequest, Forbidden, GatewayError, NotImplementedOperation
from mistral_gateway.registry import Operation
from mistral_gateway.services.container import Services
from mistral_gateway.services.tokens import Principal

__all__ = ["Application"]


class Application:
    def __init__(self, services: Services, operations: Mapping[str, Work] | None = None) -> None:
        """Raises ValueError when ``operations`` (default: all of ``app.operations.OPERATIONS``) and the registry's
        implemented rows disagree, or an operation's declared results do not fit its row (``app.kinds``)."""
        self.services = services
        self.registry = services.registry
        self.metering = Metering(services)
        self.operations: Mapping[str, Work] = OPERATIONS if operations is None else operations
        check_operations(self.registry, self.operations)

    def exchange(self, principal: Principal, op: Operation, dialect: str | None = None) -> Exchange:
        """A new exchange: what one call is metered and recorded as."""
        return Exchange(started=time.time(), op=op, principal=principal, dialect=dialect or "native")

    async def call(self, principal: Principal, op_id: str, request: Any = None, *, dialect: str | None = None,
                   body: dict[str, Any] | None = None, exchange: Exchange | None = None, guard: Guard | None = None,
                   path: Mapping[str, str] = NO_PATH, query: Any = None, base_url: str | None = None) -> Result:
        """Run an operation on its parsed input: scope, rate limits, model routing, metering, usage and token
        budgets. ``request``: the parsed body (the row's request model; None without a body); ``path``: the path
        parameters by name; ``query``: the row's query model. ``body``: the JSON as sent, if the caller has it
        (upstreams get it unchanged; else the model is dumped). ``exchange``: the caller's (HTTP: created at
        authentication, already admitted); ``guard`` wraps the wait for a whole answer (HTTP: cancelled when the
        client leaves); ``base_url``: where the caller reached this server (links handed out)."""
        op = self.registry.get(op_id)
        work = self.operations.get(op_id)
        if work is None:
            raise NotImplementedOperation(f"operation {op.name!r} has no application-layer implementation",
                                          code="OPERATION_NOT_IMPLEMENTED")
        ex = exchange or self.exchange(principal, op, dialect)
        ctx = Context(self.services, op, principal, ex.meter, body, request, guard, path, query, base_url)
        return await self.run(ex, lambda: work(ctx, request))

    async def run(self, exchange: Exchange, work: Callable[[], Awaitable[Result]]) -> Result:
        """Admit (once), run ``work``, and finish the exchange: now for whole answers and errors, at their end for
        streams (a caller that drops a stream calls ``metering.finish`` itself)."""
        op, principal = exchange.op, exchange.principal
        assert op is not None and principal is not None
        try:
            if not principal.allows(op.scope):
                raise Forbidden(f"this token lacks the {op.scope!r} scope needed for {op.name}", code="MISSING_SCOPE")
            await self.metering.admit(exchange)
            result = await work()
        except GatewayError as err:
            await self.metering.finish(exchange, err.status)
            raise
        except Exception:
            await self.metering.finish(exchange, 500)
            raise
        if op.stream != "never":
            if isinstance(result, StreamResult):
                return self.metering.stream(result, exchange)
            if isinstance(result, RawEvents):
                return self.metering.relay(result, exchange)
        if op.response_kind != "binary":  # a download counts until it is sent (the caller finishes it)
            await self.metering.finish(exchange, op.status)
        return result

    async def execute_for_batch(self, principal: Principal, endpoint: str, body: dict[str, Any], *,
                                dialect: str | None = None) -> tuple[int, dict[str, Any]]:
        """One batch line: (HTTP status, JSON body in the native dialect, errors included), billed, routed and
        limited exactly like ``POST <endpoint>`` with the same body. The answer is whole (``stream`` forced off)."""
        op = self.registry.by_path("POST", endpoint)
        if op is None or not op.batchable or op.request is None:
            err = BadRequest(f"endpoint {endpoint} is not batchable", param="endpoint", code="UNSUPPORTED_ENDPOINT")
            return err.status, error_body(err)
        if op.stream != "never":
            body = {**body, "stream": False}
        exchange = self.exchange(principal, op, dialect)
        model = op.request

        async def work() -> Result:
            request = validate_body(model, body)  # a 422 is recorded like one over HTTP (after admission)
            return await self.call(principal, op.id, request, body=body, exchange=exchange)

        try:
            result = await self.run(exchange, work)
        except GatewayError as err:
            return err.status, error_body(err)
        return op.status, json_of(result)
