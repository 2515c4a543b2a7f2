"""The request id: a client's ``X-Request-ID`` when it is short and plain, else a fresh one; echoed in the
``x-request-id`` response header and set in ``logs.REQUEST_ID`` for every log line written while handling it."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from starlette.types import Message, Send

from mistral_gateway.http.accesslog import is_secret_value

__all__ = ["HEADER", "request_id", "with_request_id"]

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
    return os.urandom(8).hex()


def with_request_id(send: Send, value: str) -> Send:
    """``send`` adding the id to the response head (errors and streams included: every response has one)."""
    header = (HEADER, value.encode("ascii"))

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), header]
        await send(message)

    return send_with_id
