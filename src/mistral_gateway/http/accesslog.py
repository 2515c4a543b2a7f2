"""Access log middleware that never writes a token: secrets in the query string and token-shaped text anywhere in
the target are redacted before the line is formatted."""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import quote, unquote_plus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mistral_gateway.security.tokens import TOKEN_PREFIX

__all__ = ["AccessLog", "is_secret_value", "redact_path", "redact_query", "redact_target"]

log = logging.getLogger("mistral_gateway.access")
# A parameter whose decoded name merely contains one of these is a secret, however it is spelled or mangled
# (``api_token%3D…``, ``api_token%20=…``, ``x-api-key``, ``signature``).
_SECRET_WORDS = ("token", "key", "signature", "secret", "password", "auth")
# Our tokens (``at_`` + 43 url-safe characters), also truncated or inside a longer value.
_TOKEN = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]{8,}")
# Long mixed-case-and-digit runs are credentials of some kind (our tokens, upstream keys, JWTs). Lower-case hex
# and UUIDs (file ids, workspace ids) have no capitals and stay readable.
_OPAQUE = re.compile(r"[A-Za-z0-9_\-+/.~=]{24,}")
_REDACTED = "***"
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def redact_query(query: str) -> str:
    # Names and values are judged decoded, as the server reads them: ``api%5Ftoken=...`` authenticates too.
    pairs = query.split("&")
    for i, pair in enumerate(pairs):
        raw_name, _, raw_value = pair.partition("=")
        name = unquote_plus(raw_name)
        end = _secret_word_end(name)
        if end is not None:
            # The name may carry the secret itself (``api_token%3D<token>`` has no '=' until decoded): keep only
            # the name up to its secret word.
            shown = quote(name[:end], safe="-_.")  # re-encoded: a decoded newline must not forge a log line
            pairs[i] = _REDACTED if is_secret_value(shown) else f"{shown}={_REDACTED}"
        elif is_secret_value(name):
            pairs[i] = _REDACTED
        elif is_secret_value(unquote_plus(raw_value)):
            pairs[i] = f"{raw_name}={_REDACTED}"
    return "&".join(pairs)


def redact_path(path: str) -> str:
    """A (decoded) path with token-shaped segments blanked (a token pasted into a URL path must not be logged) and
    control characters re-encoded (a decoded newline must not forge a log line)."""
    return _CONTROL.sub(lambda m: f"%{ord(m.group()):02X}", _TOKEN.sub(_REDACTED, path))


def redact_target(path: str, query: str) -> str:
    return redact_path(path) + ("?" + redact_query(query) if query else "")


def is_secret_value(text: str) -> bool:
    return bool(_TOKEN.search(text)) or any(_looks_opaque(m.group()) for m in _OPAQUE.finditer(text))


def _looks_opaque(run: str) -> bool:
    return any(c.isupper() for c in run) and any(c.islower() for c in run) and any(c.isdigit() for c in run)


def _secret_word_end(name: str) -> int | None:
    lowered = name.lower()
    ends = [lowered.find(word) + len(word) for word in _SECRET_WORDS if word in lowered]
    return min(ends) if ends else None


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
            target = redact_target(scope["path"], query)
            client = scope.get("client") or ("-", 0)
            ms = (time.perf_counter() - start) * 1000
            # the same values as fields for the JSON format (logs.JsonFormatter); the text line ignores them
            log.info('%s "%s %s" %d %.1fms', client[0], scope["method"], target, status, ms,
                     extra={"fields": {"client": client[0], "method": scope["method"], "path": target,
                                       "status": status, "duration_ms": round(ms, 3)}})
