"""``GET /v1/audio/transcriptions/realtime`` (and ``/mistralai/v1/...``) upgraded to a WebSocket: realtime
transcription as the official SDK's ``client.audio.realtime`` speaks it (docs/realtime.md).

Before the upgrade, as every request: the token (the dialect's: ``Authorization: Bearer`` natively,
``?api_token=`` or ``x-api-token`` in LowCodeAPI's), the ``audio`` scope and the rate limits; a refusal is an HTTP
response in the dialect's error shape (the SDK reports its status). After it, everything is the protocol's: the
session (``services/realtime.py``) answers bad messages and limits with ``error`` events, then closes.
"""

from __future__ import annotations

import contextlib
import logging
from contextvars import ContextVar
from typing import Any

import orjson
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from mistral_gateway.app import Application
from mistral_gateway.app.realtime import REALTIME, RealtimeCalls
from mistral_gateway.errors import GatewayError
from mistral_gateway.http.accesslog import redact_target
from mistral_gateway.http.dialects import LOWCODE, NATIVE, Dialect
from mistral_gateway.http.endpoint import authenticate
from mistral_gateway.services.realtime import ClientGone

__all__ = ["RedactWebSocketTargets", "realtime_routes"]

# Set in the task serving a handshake this module refused with an HTTP response (uvicorn's task, which logs after
# the app returns: the same context).
_denied: ContextVar[bool] = ContextVar("realtime_denied", default=False)
_UVICORN_DENIAL_NOISE = "ASGI callable returned without completing handshake."


def realtime_routes(application: Application) -> list[WebSocketRoute]:
    calls = RealtimeCalls(application)

    async def native(websocket: WebSocket) -> None:
        await _serve(websocket, calls, NATIVE)

    async def lowcode(websocket: WebSocket) -> None:
        await _serve(websocket, calls, LOWCODE)

    return [WebSocketRoute(REALTIME.path, native), WebSocketRoute(LOWCODE.prefix + REALTIME.path, lowcode)]


async def _serve(websocket: WebSocket, calls: RealtimeCalls, dialect: Dialect) -> None:
    try:
        principal = await authenticate(calls.application.services.tokens, dialect, websocket)
        exchange = await calls.admit(principal, dialect.name)
    except GatewayError as err:
        await _deny(websocket, dialect, err)
        return
    await websocket.accept()

    async def receive() -> str | bytes | None:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        return text if text is not None else message.get("bytes") or b""

    async def send(event: dict[str, Any]) -> None:
        try:
            await websocket.send_text(orjson.dumps(event).decode())
        except (WebSocketDisconnect, OSError, RuntimeError) as exc:  # gone (uvicorn), or the socket closed already
            raise ClientGone(str(exc)) from exc

    outcome = await calls.run(exchange, websocket.query_params.get("model"), receive, send)
    if outcome.close_code is not None:
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):  # already closed by the client
            # a close reason is at most 123 bytes of UTF-8
            await websocket.close(outcome.close_code, outcome.reason.encode()[:120].decode("utf-8", "ignore"))


async def _deny(websocket: WebSocket, dialect: Dialect, err: GatewayError) -> None:
    """Refuse the upgrade with the HTTP error a plain request would get (403 where the server cannot send one)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(dialect.error_response(err))
        _denied.set(True)
    else:
        await websocket.close(1008)


class RedactWebSocketTargets(logging.Filter):
    """uvicorn logs each WebSocket handshake with its path and query (``"WebSocket /mistralai/...?api_token=..."``)
    on ``uvicorn.error``: the target is redacted as the access log does, so no token is ever written. Also drops
    the error uvicorn (0.54) logs after every handshake refused with an HTTP response, which it sent correctly."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == _UVICORN_DENIAL_NOISE and _denied.get():
            return False
        if isinstance(record.msg, str) and '"WebSocket %s"' in record.msg and isinstance(record.args, tuple):
            record.args = tuple(_redacted(a) if isinstance(a, str) and a.startswith("/") else a for a in record.args)
        return True


def _redacted(target: str) -> str:
    path, _, query = target.partition("?")
    return redact_target(path, query)
