"""The two API dialects: where the token comes from, and how bodies and errors are shaped.

Native (``/v1``): Mistral's bodies unchanged; errors ``{"object":"error",...}``, 422 as ``{"detail":[...]}``.
LowCodeAPI (``/mistralai/v1``): JSON success bodies wrapped as ``{"data": ...}``; errors as
``{"data":{"error":{"message","code"}}}``; SSE and file downloads pass through unwrapped. Same status codes.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import HTTPConnection
from starlette.responses import Response

from mistral_gateway.app.results import error_body
from mistral_gateway.errors import GatewayError, ValidationFailed

__all__ = ["LOWCODE", "NATIVE", "Dialect"]

JSON = "application/json"


class Dialect:
    name = "native"
    prefix = ""

    def credentials(self, request: HTTPConnection) -> str | None:
        auth = request.headers.get("authorization")
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return value.strip()
            return None
        return request.headers.get("x-api-key") or None

    def wrap(self, body: bytes) -> bytes:
        return body

    def error_body(self, err: GatewayError) -> dict[str, Any]:
        return error_body(err)

    def json_response(self, body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(self.wrap(body), status_code=status, media_type=JSON, headers=headers)

    def error_response(self, err: GatewayError) -> Response:
        return Response(orjson.dumps(self.error_body(err)), status_code=err.status, media_type=JSON,
                        headers=err.headers or None)


class LowCodeDialect(Dialect):
    name = "lowcode"
    prefix = "/mistralai"

    def credentials(self, request: HTTPConnection) -> str | None:
        return request.query_params.get("api_token") or request.headers.get("x-api-token") or None

    def wrap(self, body: bytes) -> bytes:
        return b'{"data":' + body + b"}"

    def error_body(self, err: GatewayError) -> dict[str, Any]:
        error: dict[str, Any] = {"message": err.message, "code": err.code}
        if isinstance(err, ValidationFailed):
            error["detail"] = err.detail  # nothing the native dialect says is lost here
        if err.param:
            error["param"] = err.param
        return {"data": {"error": error}}


NATIVE = Dialect()
LOWCODE = LowCodeDialect()
