"""The one error hierarchy. Services raise these; the HTTP layer renders them per dialect (JSON and SSE alike).

    GatewayError
     ├── BadRequest (400)            ├── PayloadTooLarge (413)
     ├── Unauthorized (401)          ├── ValidationFailed (422, carries FastAPI-style ``detail`` items)
     ├── Forbidden (403)             ├── RateLimited (429, carries ``retry_after``)
     ├── NotFound (404)              ├── InternalError (500)
     ├── MethodNotAllowed (405)      ├── NotImplementedOperation (501)
     ├── Conflict (409)              ├── BadGateway (502: no upstream answered)
     ├── ClientClosedRequest (499)   │
     │                               ├── ServiceUnavailable (503, may carry ``retry_after``)
     │                               └── GatewayTimeout (504: an upstream timed out)
     └── UpstreamError (an upstream's own error: its status, message and code, kept as they were)
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BadGateway",
    "BadRequest",
    "ClientClosedRequest",
    "Conflict",
    "Forbidden",
    "GatewayError",
    "GatewayTimeout",
    "InternalError",
    "MethodNotAllowed",
    "NotFound",
    "NotImplementedOperation",
    "PayloadTooLarge",
    "RateLimited",
    "ServiceUnavailable",
    "Unauthorized",
    "UpstreamError",
    "ValidationFailed",
]


class GatewayError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"  # Mistral's error ``type``
    default_code: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param
        self.headers = dict(headers or {})


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    default_code = "BAD_REQUEST"


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"
    default_code = "UNAUTHORIZED"


class Forbidden(GatewayError):
    status = 403
    type = "invalid_request_error"
    default_code = "FORBIDDEN"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    default_code = "NOT_FOUND"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    default_code = "METHOD_NOT_ALLOWED"


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    default_code = "CONFLICT"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    default_code = "PAYLOAD_TOO_LARGE"


class ValidationFailed(GatewayError):
    """422 with FastAPI-style items: ``[{"loc": [...], "msg": str, "type": str, "input"?: any}]``."""

    status = 422
    type = "invalid_request_error"
    default_code = "VALIDATION_ERROR"

    def __init__(self, detail: list[dict[str, Any]], message: str | None = None) -> None:
        self.detail = detail
        if message is None:
            first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
            where = ".".join(str(p) for p in first.get("loc", []))
            message = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
            if len(detail) > 1:
                message += f" (and {len(detail) - 1} more)"
        super().__init__(message)


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    default_code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"Retry-After": str(max(1, round(retry_after)))})
        self.retry_after = retry_after


class ClientClosedRequest(GatewayError):
    """The client left before the answer was ready (nginx's 499); recorded in usage, never sent."""

    status = 499
    type = "invalid_request_error"
    default_code = "CLIENT_CLOSED_REQUEST"


class InternalError(GatewayError):
    status = 500
    type = "server_error"
    default_code = "INTERNAL_ERROR"


class NotImplementedOperation(GatewayError):
    status = 501
    type = "server_error"
    default_code = "NOT_IMPLEMENTED"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "server_error"
    default_code = "SERVICE_UNAVAILABLE"

    def __init__(self, message: str, *, retry_after: float | None = None, code: str | None = None) -> None:
        headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
        super().__init__(message, code=code, headers=headers)


class BadGateway(GatewayError):
    status = 502
    type = "server_error"
    default_code = "UPSTREAM_UNAVAILABLE"


class GatewayTimeout(GatewayError):
    status = 504
    type = "server_error"
    default_code = "UPSTREAM_TIMEOUT"


class UpstreamError(GatewayError):
    """An error an upstream answered with, relayed in the caller's dialect with the upstream's status."""

    def __init__(self, status: int, message: str, *, code: str | None = None, type: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, code=code or f"UPSTREAM_{status}", param=param, headers=headers)
        self.status = status  # type: ignore[misc]  # per instance: whatever the upstream said
        self.type = type or ("invalid_request_error" if status < 500 else "server_error")  # type: ignore[misc]
