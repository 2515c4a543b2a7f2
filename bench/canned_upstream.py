"""The proxy suite's upstream: a raw ASGI app that answers every chat completion with the same canned body.

    python bench/canned_upstream.py --port 8123

- ``POST /v1/chat/completions`` (also ``/chat/completions``: some proxies drop the ``/v1``): a fixed
  Mistral/OpenAI-shaped ``chat.completion`` with ``usage``; with ``"stream": true`` in the body, server-sent events:
  a role chunk, ``CONTENT_PIECES`` content chunks, a last chunk with ``finish_reason`` and ``usage``, then
  ``data: [DONE]``, each sent as its own ASGI message (as a real streaming server does).
- ``GET /v1/models`` (and ``/models``): one model, ``canned-model``.
- ``GET /health``: for the readiness probe.

Nothing here waits or computes: what a client measures against it is the HTTP stack (uvicorn, one worker,
``loop``/``http`` on ``auto``, access log off: the same way every server of the harness runs), so a proxy in front of
it adds exactly its own cost. The ``model`` field of the request is echoed, as an OpenAI-compatible server does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

__all__ = ["CONTENT", "CONTENT_PIECES", "MODEL", "app", "completion_body", "main", "stream_events"]

MODEL = "canned-model"
CONTENT = "Hello! This is a canned answer from the benchmark upstream."
CONTENT_PIECES = ("Hello! ", "This is a canned answer ", "from the benchmark upstream.")
CREATED = 1732492800
USAGE = {"prompt_tokens": 5, "completion_tokens": 12, "total_tokens": 17}

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
CHUNK_DELAY_S = 0.0  # between streamed events (--chunk-delay-ms): shows whether a proxy relays or buffers a stream
_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS_PATHS = frozenset({"/v1/models", "/models"})


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def completion_body(model: str = MODEL) -> bytes:
    return _dumps({
        "id": "cmpl-canned0000000000000000000000",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": CONTENT, "tool_calls": None},
                     "finish_reason": "stop"}],
        "usage": USAGE,
    })


def stream_events(model: str = MODEL) -> list[bytes]:
    """The SSE frames of a streamed answer, ``data: [DONE]`` last."""

    def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
        body: dict[str, Any] = {"id": "cmpl-canned0000000000000000000000", "object": "chat.completion.chunk",
                                "created": CREATED, "model": model,
                                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage is not None:
            body["usage"] = usage
        return b"data: " + _dumps(body) + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in CONTENT_PIECES]
    events.append(chunk({"content": ""}, "stop", USAGE))
    events.append(b"data: [DONE]\n\n")
    return events


_MODELS = _dumps({"object": "list", "data": [{"id": MODEL, "object": "model", "created": CREATED,
                                               "owned_by": "bench"}]})
_DEFAULT_COMPLETION = completion_body()
_DEFAULT_EVENTS = stream_events()


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = _JSON) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _chat(receive: Receive, send: Send) -> None:
    try:
        request = json.loads(await _read_body(receive))
    except ValueError:
        await _respond(send, 400, b'{"error":{"message":"body is not JSON"}}')
        return
    model = request.get("model") if isinstance(request, dict) else None
    model = model if isinstance(model, str) and model else MODEL
    if not request.get("stream"):
        await _respond(send, 200, _DEFAULT_COMPLETION if model == MODEL else completion_body(model))
        return
    await send({"type": "http.response.start", "status": 200, "headers": _SSE})
    for i, event in enumerate(_DEFAULT_EVENTS if model == MODEL else stream_events(model)):
        if CHUNK_DELAY_S and i:
            await asyncio.sleep(CHUNK_DELAY_S)
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if path in _CHAT_PATHS and method == "POST":
        await _chat(receive, send)
    elif path in _MODELS_PATHS and method == "GET":
        await _respond(send, 200, _MODELS)
    elif path == "/health":
        await _respond(send, 200, b'{"status":"ok"}')
    else:
        await _respond(send, 404, _dumps({"error": {"message": f"no route {method} {path}"}}))


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0,
                        help="pause between streamed events (0: none, what the benchmark uses)")
    args = parser.parse_args(argv)
    global CHUNK_DELAY_S
    CHUNK_DELAY_S = args.chunk_delay_ms / 1000.0
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
