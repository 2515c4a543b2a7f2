"""Typed client exceptions, built from the gateway's error bodies.

    ClientError
     ├── ApiConnectionError          the server could not be reached (after retries)
     └── ApiError                    an HTTP error answer: ``status``, ``code``, ``message`` (+ ``param``, ``detail``)
          ├── BadRequestError (400)          ├── ValidationError (422; also raised client-side before sending)
          ├── AuthenticationError (401)      ├── RateLimitError (429, ``retry_after``)
          ├── PermissionDeniedError (403)    ├── ServerError (5xx)
          ├── NotFoundError (404)            │    ├── NotImplementedOperationError (501)
          ├── ConflictError (409)            │    └── ServiceUnavailableError (503, ``retry_after``)
          ├── PayloadTooLargeError (413)     └── StreamError (an error event inside an SSE stream)
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "ClientError",
    "ConflictError",
    "NotFoundError",
    "NotImplementedOperationError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
    "StreamError",
    "ValidationError",
    "error_for",
    "parse_error_body",
    "parse_retry_after",
]


class ClientError(Exception):
    """Base of everything this client raises on purpose."""


class ApiConnectionError(ClientError):
    """No HTTP answer: connection refused, DNS failure, timeout (the httpx error is the ``__cause__``)."""


class ApiError(ClientError):
    status: int = 0
    default_code = "ERROR"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 param: str | None = None, detail: Any = None, headers: Mapping[str, str] | None = None,
                 body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.code = code or self.default_code
        self.param = param
        self.detail = detail
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.body = body

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status}, {self.code})"


class BadRequestError(ApiError):
    status = 400
    default_code = "BAD_REQUEST"


class AuthenticationError(ApiError):
    status = 401
    default_code = "UNAUTHORIZED"


class PermissionDeniedError(ApiError):
    status = 403
    default_code = "FORBIDDEN"


class NotFoundError(ApiError):
    status = 404
    default_code = "NOT_FOUND"


class ConflictError(ApiError):
    status = 409
    default_code = "CONFLICT"


class PayloadTooLargeError(ApiError):
    status = 413
    default_code = "PAYLOAD_TOO_LARGE"


class ValidationError(ApiError):
    """422; ``detail`` holds FastAPI-style items ``{"loc", "msg", "type"}``."""

    status = 422
    default_code = "VALIDATION_ERROR"


class _RetryAfter(ApiError):
    @property
    def retry_after(self) -> float | None:
        """Seconds from the ``Retry-After`` header, when the server sent one."""
        return parse_retry_after(self.headers.get("retry-after"))


class RateLimitError(_RetryAfter):
    status = 429
    default_code = "RATE_LIMITED"


class ServerError(ApiError):
    status = 500
    default_code = "INTERNAL_ERROR"


class NotImplementedOperationError(ServerError):
    status = 501
    default_code = "NOT_IMPLEMENTED"


class ServiceUnavailableError(ServerError, _RetryAfter):
    status = 503
    default_code = "SERVICE_UNAVAILABLE"


class StreamError(ApiError):
    """The server hit an error after the stream had started (its status line already said 200)."""

    default_code = "STREAM_ERROR"


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    409: ConflictError, 413: PayloadTooLargeError, 422: ValidationError, 429: RateLimitError,
    501: NotImplementedOperationError, 503: ServiceUnavailableError,
}


def parse_error_body(raw: bytes) -> tuple[dict[str, Any] | None, Any]:
    """(the error object, the decoded body). Reads the LowCodeAPI envelope ``{"data":{"error":{...}}}`` and, to
    stay useful behind other servers, Mistral's ``{"message","code"}`` and FastAPI's ``{"detail": [...]}``."""
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        return None, raw.decode("utf-8", "replace")
    if not isinstance(body, dict):
        return None, body
    data = body.get("data")
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return data["error"], body
    if isinstance(body.get("message"), str):
        return body, body
    if isinstance(body.get("detail"), list):
        return {"message": "validation failed", "code": "VALIDATION_ERROR", "detail": body["detail"]}, body
    return None, body


def error_for(status: int, raw: bytes, headers: Mapping[str, str] | None = None) -> ApiError:
    """The typed exception for an HTTP error answer."""
    error, body = parse_error_body(raw)
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    if error is None:
        text = body if isinstance(body, str) and body.strip() else f"HTTP {status}"
        return cls(text[:500], status=status, headers=headers, body=body)
    code = error.get("code")
    param = error.get("param")
    return cls(str(error.get("message") or f"HTTP {status}"), status=status,
               code=str(code) if code is not None else None, param=param if isinstance(param, str) else None,
               detail=error.get("detail"), headers=headers, body=body)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
