"""An upstream's error response, read into the gateway's error type with its status, message and code kept.

Understood shapes: Mistral's ``{"object":"error","message",...}``, FastAPI's ``{"detail": [...]}`` (422, kept
item by item), OpenAI's ``{"error": {...}}``, the LowCodeAPI envelope ``{"data":{"error":{...}}}``, and Mistral's
edge ``{"message": ..., "request_id": ...}``; anything else keeps the start of its text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from mistral_gateway.errors import GatewayError, UpstreamError, ValidationFailed

__all__ = ["upstream_error"]

_KEEP_HEADERS = ("retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
_TEXT_LIMIT = 500


def upstream_error(upstream: str, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    kept = {name.title(): headers[name] for name in _KEEP_HEADERS if name in headers}
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("data"), dict) and "error" in data["data"]:
        data = data["data"]  # LowCodeAPI envelope
    if isinstance(data, dict):
        detail = data.get("detail")
        if status == 422 and isinstance(detail, list):
            err = ValidationFailed(detail)
            err.headers.update(kept)
            return err
        fields: dict[str, Any] = data.get("error") if isinstance(data.get("error"), dict) else data
        message = fields.get("message", detail if detail is not None else fields.get("error"))
        if message is not None:
            return UpstreamError(status, _text(message), code=_code(fields.get("code")), type=_str(fields.get("type")),
                                 param=_str(fields.get("param")), headers=kept)
    text = body.decode("utf-8", "replace").strip()[:_TEXT_LIMIT] or "(empty body)"
    return UpstreamError(status, f"upstream {upstream!r} answered {status}: {text}", headers=kept)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _code(value: Any) -> str | None:
    return None if value in (None, "") else str(value)
