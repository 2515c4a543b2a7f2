"""The ASGI endpoint serving every registry operation in one dialect.

Order of checks: route (404/405) → path parameters (LowCodeAPI old/new format) → token (401) → scope (403)
→ rate limits (429) → built yet? (501) → handler (parse, then the application layer: ``mistral_gateway.app``) →
render, as the registry row's response kind says (JSON, SSE for a streaming row's streams, binary, empty). Usage
is recorded by the application layer (``app.metering``); requests that fail before reaching it (422 on parsing,
501, passthrough) are finished here. Every error leaves in the dialect's shape with its status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import quote

from anyio.to_thread import run_sync
from pydantic import BaseModel
from starlette.concurrency import iterate_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from mistral_gateway.app import Application
from mistral_gateway.app.metering import Exchange
from mistral_gateway.app.results import BinaryResult, NoContent, RawEvents, RawJSON, StreamResult
from mistral_gateway.errors import (
    Forbidden,
    GatewayError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    NotImplementedOperation,
    Unauthorized,
)
from mistral_gateway.http.accesslog import redact_path
from mistral_gateway.http.dialects import Dialect
from mistral_gateway.http.dispatch import RouteTable, resolve_old_format
from mistral_gateway.http.handlers import Call, Handler
from mistral_gateway.http.handlers.registry import bind
from mistral_gateway.http.passthrough import forward
from mistral_gateway.http.sse import relay_events, sse_events
from mistral_gateway.registry import Operation
from mistral_gateway.services.tokens import Principal, TokenService

__all__ = ["OperationEndpoint", "authenticate"]

log = logging.getLogger("mistral_gateway.http")


class OperationEndpoint:
    def __init__(self, app: Application, dialect: Dialect, routes: RouteTable) -> None:
        self.app = app
        self.services = app.services
        self.dialect = dialect
        self.routes = routes
        self.metering = app.metering
        self.handlers: dict[str, Handler] = bind(app.services.registry, app.operations)
        self.renderers: dict[str, Callable[[object], Response]] = {
            op.id: self._renderer(op) for op in app.services.registry if op.id in self.handlers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        exchange = Exchange(started=time.time(), dialect=self.dialect.name)
        try:
            response = await self.handle(request, exchange)
        except GatewayError as err:
            response = self.dialect.error_response(err)
        except Exception:
            log.exception("unhandled error in %s %s", request.method, redact_path(scope.get("path", "")))
            response = self.dialect.error_response(InternalError("internal server error"))
        if exchange.principal is None:  # not authenticated: nothing to meter, only to count
            self.metering.count_unmetered(exchange, response.status_code)
            await response(scope, receive, send)
            return
        if not isinstance(response, StreamingResponse):
            await self.metering.finish(exchange, response.status_code)  # lease back before the client has it
        try:
            await response(scope, receive, send)
        finally:
            if not exchange.finished:
                await self.metering.finish(exchange, response.status_code)  # streams

    async def handle(self, request: Request, exchange: Exchange) -> Response:
        path = request.scope["path"][len(self.dialect.prefix):]
        match = self.routes.match(path)
        if match is None:
            raise self._unknown_route(request)
        op = match.methods.get(request.method)
        if op is None:
            allowed = ", ".join(sorted(match.methods))
            raise MethodNotAllowed(f"method {request.method} is not allowed on {request.url.path}; allowed: {allowed}",
                                   headers={"Allow": allowed})
        params, old = match.params, False
        if self.dialect.name == "lowcode" and params:
            settings = self.services.settings
            params, old = resolve_old_format(op, params, request.query_params, allow_new=settings.lowcode_new_format,
                                             allow_old=settings.lowcode_old_format)
        exchange.op = op  # the metrics count a refused token by its operation too
        principal = await self._authenticate(request)
        exchange.principal = principal  # from here on the request is recorded in usage
        if not principal.allows(op.scope):
            raise Forbidden(f"this token lacks the {op.scope!r} scope needed for {op.name}", code="MISSING_SCOPE")
        await self.metering.admit(exchange)  # rate limits (429), before the body is read
        upstream = self.services.passthrough.get(principal.workspace) if self.services.passthrough else None
        if upstream is not None:  # the workspace forwards every operation, built here or not
            settings = self.services.settings
            return await forward(upstream, op, request, params, self.dialect, json_limit=settings.max_json_body_bytes,
                                 upload_limit=settings.max_upload_bytes, meter=exchange.meter)
        handler = self.handlers.get(op.id)
        if handler is None:
            raise self._not_built(op)
        call = Call(op=op, request=request, principal=principal, path=params, app=self.app, exchange=exchange,
                    dialect=self.dialect.name, old_format=old)
        result = await handler(call)
        return self.renderers[call.op.id](result)  # the handler may hand a request to its twin (stream=true)

    async def _authenticate(self, request: Request) -> Principal:
        return await authenticate(self.services.tokens, self.dialect, request)

    def _renderer(self, op: Operation) -> Callable[[object], Response]:
        """How ``op``'s results become responses: chosen once per row (its kinds were checked at startup)."""
        dialect, status = self.dialect, op.status

        def json(result: object) -> Response:
            if isinstance(result, RawJSON):
                return dialect.json_response(result.body, result.status or status)
            if isinstance(result, BaseModel):
                return dialect.json_response(result.model_dump_json().encode(), status)
            raise TypeError(f"{op.id} returned {type(result).__name__} for a JSON response")

        def sse(result: object) -> Response:
            if isinstance(result, StreamResult):
                events = sse_events(result, dialect)
            elif isinstance(result, RawEvents):
                events = relay_events(result.chunks, dialect)
            else:
                raise TypeError(f"{op.id} returned {type(result).__name__} for an event stream")
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

        def json_or_sse(result: object) -> Response:  # the body's ``stream`` chose
            return sse(result) if isinstance(result, (StreamResult, RawEvents)) else json(result)

        def binary(result: object) -> Response:
            if not isinstance(result, BinaryResult):
                raise TypeError(f"{op.id} returned {type(result).__name__} for a binary response")
            headers = {"Content-Disposition": _content_disposition(result.filename)}
            if result.size is not None:
                headers["Content-Length"] = str(result.size)
            return StreamingResponse(iterate_in_threadpool(result.chunks), media_type=result.media_type,
                                     headers=headers)

        def empty(result: object) -> Response:
            if not isinstance(result, NoContent):
                raise TypeError(f"{op.id} returned {type(result).__name__} for an empty response")
            return Response(status_code=204)  # same status in both dialects; a 204 carries no body to wrap

        if op.stream == "always":
            return sse
        if op.response_kind == "json":
            return json if op.stream == "never" else json_or_sse
        return binary if op.response_kind == "binary" else empty

    def _unknown_route(self, request: Request) -> NotFound:
        if self.dialect.name == "lowcode":
            return NotFound(f"unknown route {request.method} {request.url.path}; the available operations are "
                            "listed at /mistralai/definition (old format) and /mistralai/openapi (new format)",
                            code="ROUTE_NOT_FOUND")
        return NotFound(f"unknown route {request.method} {request.url.path}", code="ROUTE_NOT_FOUND")

    def _not_built(self, op: Operation) -> NotImplementedOperation:
        names = op.name
        if op.twin:
            names = f"{op.name} / {self.services.registry.get(op.twin).name}"
        return NotImplementedOperation(
            f"operation '{names}' ({op.method} {op.path}) is not implemented yet in this mistral-gateway build",
            code="OPERATION_NOT_IMPLEMENTED")


async def authenticate(tokens: TokenService, dialect: Dialect, connection: HTTPConnection) -> Principal:
    """The caller's principal from the dialect's credentials (401 when missing or not valid); WebSockets too."""
    token = dialect.credentials(connection)
    if not token:
        where = "?api_token=..." if dialect.name == "lowcode" else "an 'Authorization: Bearer' header"
        raise Unauthorized(f"missing API token: pass it as {where}", code="MISSING_TOKEN")
    return tokens.verify_cached(token) or await run_sync(tokens.verify, token)


def _content_disposition(filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace('"', "'").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
