"""Full passthrough: a workspace set to ``passthrough = "<upstream>"`` has every operation forwarded unchanged to a
``mistral`` or ``mistral-gateway`` upstream (the LowCodeAPI behaviour), answered in the caller's dialect.

Bodies stream through: multipart uploads are not loaded into memory (the upload limit still applies), SSE and file
downloads are relayed chunk by chunk. JSON bodies are read (within the JSON limit) so usage can name the model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mistral_gateway.app.metering import Meter
from mistral_gateway.errors import PayloadTooLarge
from mistral_gateway.http.bodies import declared_length, read_body
from mistral_gateway.http.dialects import Dialect
from mistral_gateway.http.sse import relay_events
from mistral_gateway.registry import Operation
from mistral_gateway.upstreams.client import UpstreamClient
from mistral_gateway.upstreams.errors import upstream_error
from mistral_gateway.upstreams.relay import relay_raw, usage_sink

__all__ = ["forward"]

_RESPONSE_HEADERS = ("content-disposition", "content-length", "x-request-id")


async def forward(client: UpstreamClient, op: Operation, request: Request, params: dict[str, str],
                  dialect: Dialect, *, json_limit: int, upload_limit: int, meter: Meter) -> Response:
    path = op.path.format(**{name: quote(value, safe="") for name, value in params.items()})
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "api_token" and k not in params]
    headers = {"Accept": request.headers.get("accept", "*/*"), "Accept-Encoding": "identity"}
    content: bytes | AsyncIterator[bytes] | None = None
    if request.method in ("POST", "PUT", "PATCH") or declared_length(request):
        ctype = request.headers.get("content-type", "")
        headers["Content-Type"] = ctype
        if ctype.startswith("multipart/"):
            length = declared_length(request)
            if length is not None:
                headers["Content-Length"] = str(length)
            content = _limited(request, upload_limit)
        else:
            content = await read_body(request, json_limit)
            meter.model = _model(content)
    exchange = await client.open(request.method, path, params=query, content=content, headers=headers)
    if exchange.status >= 400:
        raise upstream_error(client.name, exchange.status, await exchange.read(), exchange.headers)
    meter.backend = client.name
    ctype = exchange.headers.get("content-type", "")
    if exchange.status == 204:
        exchange.close()
        return Response(status_code=204)
    if ctype.startswith("text/event-stream"):
        chunks = relay_raw(exchange, usage_sink(meter))
        return StreamingResponse(relay_events(chunks, dialect), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    if ctype.startswith("application/json"):
        body = await exchange.read()
        _usage(body, meter)
        return dialect.json_response(body, exchange.status)
    kept = {name: exchange.headers[name] for name in _RESPONSE_HEADERS if name in exchange.headers}
    return StreamingResponse(_closing(exchange.chunks()), status_code=exchange.status, media_type=ctype or None,
                             headers=kept)


async def _closing(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Closes the upstream response at once when the client goes away (not whenever the generator is collected)."""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        yield chunk


def _model(body: bytes) -> str | None:
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None


def _usage(body: bytes, meter: Meter) -> None:
    if b'"usage"' not in body:
        return
    try:
        usage = orjson.loads(body).get("usage")
    except (orjson.JSONDecodeError, AttributeError):
        return
    if isinstance(usage, dict):
        usage_sink(meter)(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))

