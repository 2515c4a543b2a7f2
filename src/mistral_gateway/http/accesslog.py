"""Access log middleware that never writes a token: the query string is logged with ``api_token`` redacted."""

from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AccessLog", "redact_query"]

log = logging.getLogger("mistral_gateway.access")
_TOKEN_PARAM = re.compile(r"(?i)(^|&)(api_token|token|signature)=[^&]*")


def redact_query(query: str) -> str:
    return _TOKEN_PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}=***", query)


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
