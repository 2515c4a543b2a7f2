"""The admin API (not a Mistral route): ``/admin/tokens`` mirrors ``mistral-gateway tokens``, ``/admin/usage``
mirrors ``mistral-gateway usage``. Bearer token with the ``admin`` scope (given explicitly: ``*`` alone does not
include it, so an ordinary token never sees other workspaces' tokens); errors in the native shape."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import orjson
from anyio.to_thread import run_sync
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mistral_gateway.errors import Forbidden, GatewayError, InternalError, Unauthorized
from mistral_gateway.http.accesslog import redact_path
from mistral_gateway.http.bodies import parse_query, read_json
from mistral_gateway.http.dialects import NATIVE
from mistral_gateway.protocol.admin import TokenCreateIn, UsageQuery
from mistral_gateway.services.container import Services
from mistral_gateway.services.tokens import describe_token
from mistral_gateway.services.usage import parse_time

__all__ = ["admin_routes"]

log = logging.getLogger("mistral_gateway.http")

Endpoint = Callable[[Request], Awaitable[Response]]


def admin_routes(services: Services) -> list[Route]:
    admin = _Admin(services)
    return [
        Route("/admin/tokens", admin.guard(admin.list_tokens), methods=["GET"]),
        Route("/admin/tokens", admin.guard(admin.create_token), methods=["POST"]),
        Route("/admin/tokens/{token_id}", admin.guard(admin.revoke_token), methods=["DELETE"]),
        Route("/admin/usage", admin.guard(admin.usage), methods=["GET"]),
    ]


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


class _Admin:
    def __init__(self, services: Services) -> None:
        self.services = services

    def guard(self, endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            try:
                await self._authorize(request)
                return await endpoint(request)
            except GatewayError as err:
                return NATIVE.error_response(err)
            except Exception:
                log.exception("unhandled error in %s %s", request.method, redact_path(request.url.path))
                return NATIVE.error_response(InternalError("internal server error"))

        return guarded

    async def _authorize(self, request: Request) -> None:
        token = NATIVE.credentials(request)
        if not token:
            raise Unauthorized("missing API token: pass it as an 'Authorization: Bearer' header", code="MISSING_TOKEN")
        tokens = self.services.tokens
        principal = tokens.verify_cached(token) or await run_sync(tokens.verify, token)
        if "admin" not in principal.scopes:  # explicit only: `*` covers the Mistral API, not other tokens
            raise Forbidden("this token lacks the 'admin' scope needed for the admin API", code="MISSING_SCOPE")

    async def list_tokens(self, _: Request) -> Response:
        records = await run_sync(self.services.tokens.list)
        now = time.time()
        return _json({"object": "list", "data": [describe_token(r, now) for r in records]})

    async def create_token(self, request: Request) -> Response:
        body = await read_json(request, TokenCreateIn, self.services.settings.max_json_body_bytes)
        token, record = await run_sync(lambda: self.services.tokens.create(
            body.name, workspace=body.workspace, scopes=body.scopes, expires_in=body.expires_in,
            requests_per_minute=body.requests_per_minute, tokens_per_minute=body.tokens_per_minute,
            concurrent_requests=body.concurrent_requests))
        return _json({**describe_token(record, time.time()), "token": token}, status=201)  # shown only this once

    async def revoke_token(self, request: Request) -> Response:
        token_id = request.path_params["token_id"]
        await run_sync(self.services.tokens.revoke, token_id)
        return _json({"id": token_id, "object": "token", "revoked": True})

    async def usage(self, request: Request) -> Response:
        query = parse_query(UsageQuery, request.query_params)
        now = time.time()
        since = parse_time(query.since, now=now, param="since") if query.since else None
        until = parse_time(query.until, now=now, param="until") if query.until else None
        usage = self.services.usage
        if query.by is None:
            records, total = await run_sync(lambda: usage.list(since=since, until=until, limit=query.limit,
                                                               page=query.page))
            return _json({"object": "list", "data": [asdict(r) for r in records], "total": total,
                          "page": query.page, "limit": query.limit})
        rows = await run_sync(lambda: usage.summary(query.by or "", since=since, until=until))
        return _json({"object": "usage.summary", "by": query.by, "since": since, "until": until,
                      "data": [{**asdict(r), "total_tokens": r.prompt_tokens + r.completion_tokens} for r in rows]})
