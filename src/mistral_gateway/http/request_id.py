"""The request id: a client's ``X-Request-ID`` when it is short and plain, else a fresh one; echoed in the
``x-request-id`` response header and set in ``logs.REQUEST_ID`` for every log line written while handling it."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from starlette.types import Message, Send

from mistral_gateway.http.accesslog import is_secret_value

__all__ = ["HEADER", "new_request_id", "request_id", "with_request_id"]

HEADER = b"x-request-id"
_PLAIN = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's id if plain and not token-shaped (a client pasting its token there must not get it logged),
    else 16 random hex digits (cheaper than a uuid4 and as unlikely to collide within a log's retention)."""
    for name, value in headers:
        if name == HEADER:
            if _PLAIN.fullmatch(value):
                text = value.decode("ascii")
                if not is_secret_value(text):
                    return text
            break
    return new_request_id()


def new_request_id() -> str:
    return os.urandom(8).hex()


# the ASGI messages that start a response head: an HTTP response, a WebSocket handshake accepted, or refused
_HEADS = frozenset({"http.response.start", "websocket.accept", "websocket.http.response.start"})


def with_request_id(send: Send, value: str) -> Send:
    """``send`` adding the id to the response head (errors, streams and WebSocket handshakes included: every
    response has one)."""
    header = (HEADER, value.encode("ascii"))

    async def send_with_id(message: Message) -> None:
        if message["type"] in _HEADS:
            message["headers"] = [*message.get("headers", ()), header]
        await send(message)

    return send_with_id
