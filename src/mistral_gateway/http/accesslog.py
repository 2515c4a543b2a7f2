"""Access log middleware that never writes a token: the query string is logged with ``api_token`` redacted."""

from __future__ import annotations

import logging
import time
from urllib.parse import unquote_plus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AccessLog", "redact_query"]

log = logging.getLogger("mistral_gateway.access")
_SECRET_PARAMS = frozenset({"api_token", "token", "signature"})


def redact_query(query: str) -> str:
    # Names are compared decoded, as the server reads them: ``api%5Ftoken=...`` authenticates too.
    pairs = query.split("&")
    for i, pair in enumerate(pairs):
        name, sep, _ = pair.partition("=")
        if sep and unquote_plus(name).lower() in _SECRET_PARAMS:
            pairs[i] = f"{name}=***"
    return "&".join(pairs)


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            query = scope.get("query_string", b"").decode("latin-1")
            target = scope["path"] + ("?" + redact_query(query) if query else "")
            client = scope.get("client") or ("-", 0)
            log.info('%s "%s %s" %d %.1fms', client[0], scope["method"], target, status,
                     (time.perf_counter() - start) * 1000)
