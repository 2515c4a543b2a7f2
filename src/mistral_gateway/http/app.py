"""The application factory. Nothing is created at import time; every dependency comes from ``Services``."""

from __future__ import annotations

import gc
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache

import orjson
from anyio.to_thread import run_sync
from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from mistral_gateway.app import Application
from mistral_gateway.app.batch import route_batches
from mistral_gateway.config import Settings
from mistral_gateway.errors import GatewayError
from mistral_gateway.http.admin import admin_routes
from mistral_gateway.http.dialects import LOWCODE, NATIVE
from mistral_gateway.http.dispatch import RouteTable
from mistral_gateway.http.endpoint import OperationEndpoint, _content_disposition
from mistral_gateway.http.openapi import build_definition, build_openapi
from mistral_gateway.http.realtime import RedactWebSocketTargets, realtime_routes
from mistral_gateway.http.request_id import request_id, with_request_id
from mistral_gateway.logs import REQUEST_ID
from mistral_gateway.services.container import Services, build_services
from mistral_gateway.services.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

__all__ = ["FrontDoor", "create_app"]

log = logging.getLogger("mistral_gateway")


def create_app(settings: Settings | None = None, services: Services | None = None) -> FrontDoor:
    if services is None:
        services = build_services(settings or Settings())
    routes_table = RouteTable(services.registry)
    application = Application(services)
    route_batches(application)
    native = OperationEndpoint(application, NATIVE, routes_table)
    lowcode = OperationEndpoint(application, LOWCODE, routes_table)

    @cache
    def document(kind: str) -> bytes:
        if kind == "definition":
            return orjson.dumps(build_definition(services.registry), option=orjson.OPT_INDENT_2)
        return orjson.dumps(build_openapi(services.registry, kind), option=orjson.OPT_INDENT_2)

    async def health(_: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def ready(_: Request) -> Response:
        checks = await services.readiness.run()
        failed = [name for name, result in checks.items() if result != "ok"]
        body = {"status": "unavailable" if failed else "ready", "checks": checks, **({"failed": failed} if failed
                                                                                     else {})}
        return Response(orjson.dumps(body), status_code=503 if failed else 200, media_type="application/json",
                        headers={"Retry-After": str(_READY_RETRY_AFTER)} if failed else None)

    async def metrics(request: Request) -> Response:
        expected = services.settings.metrics_token
        if expected is not None:
            sent = request.headers.get("authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {expected}".encode()):
                return Response(b"metrics need the metrics token\n", status_code=401, media_type="text/plain",
                                headers={"WWW-Authenticate": "Bearer"})
        # off the event loop: rendering walks every series, and the queue depth reads the database
        return Response(await run_sync(services.metrics.render), media_type=METRICS_CONTENT_TYPE)

    async def lowcode_openapi(_: Request) -> Response:
        return Response(document("lowcode"), media_type="application/json")

    async def lowcode_definition(_: Request) -> Response:
        return Response(document("definition"), media_type="application/json")

    async def native_openapi(_: Request) -> Response:
        return Response(document("native"), media_type="application/json")

    async def signed_download(request: Request) -> Response:
        q = request.query_params
        args = (request.path_params["file_id"], q.get("ws", ""), q.get("expires", ""), q.get("signature", ""))
        try:
            if services.files.redirects_signed:  # the blob store serves the bytes itself (S3 presigned URL)
                location = await run_sync(services.files.signed_redirect, *args, _content_disposition)
                return RedirectResponse(location, status_code=307)
            download = await run_sync(services.files.download_signed, *args)
        except GatewayError as err:
            return NATIVE.error_response(err)
        return StreamingResponse(iterate_in_threadpool(download.chunks), media_type="application/octet-stream",
                                 headers={"Content-Disposition": _content_disposition(download.filename),
                                          "Content-Length": str(download.size)})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        handshakes = logging.getLogger("uvicorn.error")  # configured by uvicorn by now: the filter stays
        if not any(isinstance(f, RedactWebSocketTargets) for f in handshakes.filters):
            handshakes.addFilter(RedactWebSocketTargets())
        removed = await run_sync(services.blobs.sweep_partials)
        if removed:
            log.info("removed %d partial upload(s) left by an earlier crash", removed)
        if services.settings.load_models_at_start:
            await services.engines.preload([e for e in services.models.catalog.entries if e.served_locally])
            log.info("models loaded: %s", ", ".join(services.engines.loaded()))
        # Everything built so far lives as long as the server: move it out of the collector's view, so its full
        # collections (which stall the event loop) walk only what requests allocate, not every module and model.
        gc.collect()
        gc.freeze()
        # Usage writer, lease renewer and (run_embedded_worker) job workers on this loop, beside the engines; at
        # the end running jobs finish or go back to the queue, and the upstream clients close.
        async with services.running():
            yield
        services.close()

    app = Starlette(
        routes=[
            Route("/mistralai/openapi", lowcode_openapi, methods=["GET"]),
            Route("/mistralai/definition", lowcode_definition, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            *([Route("/metrics", metrics, methods=["GET"])] if services.settings.metrics_enabled else []),
            Route("/openapi.json", native_openapi, methods=["GET"]),
            Route("/files/signed/{file_id}", signed_download, methods=["GET"]),
            *admin_routes(services),
            *realtime_routes(application),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.application = application
    return FrontDoor(app, native, lowcode)


class FrontDoor:
    """Sends API traffic straight to the operation endpoints (which render their own errors), skipping
    Starlette's router and middleware stack on the hot path; everything else, lifespan included, goes to ``app``.
    """

    def __init__(self, app: Starlette, native: OperationEndpoint, lowcode: OperationEndpoint) -> None:
        self.app = app
        self.state = app.state
        self._native = native
        self._lowcode = lowcode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" or kind == "websocket":  # the realtime handshake and its session's lines get one too
            rid = request_id(scope.get("headers", ()))
            REQUEST_ID.set(rid)  # this request's task only: each request runs in its own task
            send = with_request_id(send, rid)
        if kind == "http":
            path: str = scope["path"]
            if path.startswith("/v1/") or path == "/v1":
                await self._native(scope, receive, send)
                return
            if (path.startswith("/mistralai/") or path == "/mistralai") and path not in _LOWCODE_DOCS:
                await self._lowcode(scope, receive, send)
                return
        await self.app(scope, receive, send)


_READY_RETRY_AFTER = 5  # seconds: a load balancer probing again sooner learns nothing new
_LOWCODE_DOCS = frozenset({"/mistralai/openapi", "/mistralai/definition"})
