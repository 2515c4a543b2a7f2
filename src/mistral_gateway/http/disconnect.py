"""Stop a non-streamed request's work when its client leaves.

Starlette cancels nothing when the client of a plain (non-streaming) response disconnects: the handler runs to the
end, e.g. a generation of thousands of tokens nobody will read (issue 9). Once the handler has read the whole body,
the only message the ASGI server still delivers is ``http.disconnect``, so one pending ``receive()`` next to the work
notices it at no cost per token: the work is cancelled, which closes the engine's stream (llama.cpp then stops the
slot). Streamed responses need none of this: Starlette's ``StreamingResponse`` already stops on disconnect.

The watcher starts only once the work has run ``WATCH_AFTER`` seconds: most answers (embeddings, a text-layer
PDF) come sooner, and then no task is created, stepped and cancelled for them (a timer is much cheaper). A client
that left earlier is noticed when the watcher starts: its first ``receive()`` returns ``http.disconnect`` at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from mistral_gateway.errors import ClientClosedRequest

__all__ = ["WATCH_AFTER", "unless_disconnected"]

T = TypeVar("T")
WATCH_AFTER = 0.05  # seconds of work before the disconnect watcher starts


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``await work``, cancelled if the client disconnects first (then ``ClientClosedRequest``: nobody reads it).
    Call it only after the request body was read in full. At most one watcher task per request (none for work done
    within ``WATCH_AFTER``), none per token."""
    current = asyncio.current_task()
    assert current is not None
    loop = asyncio.get_running_loop()
    left = False
    watcher: asyncio.Task[None] | None = None

    async def watch() -> None:
        nonlocal left
        while (await request.receive())["type"] != "http.disconnect":
            pass
        left = True
        current.cancel()

    def start() -> None:
        nonlocal watcher
        watcher = loop.create_task(watch())

    timer = loop.call_later(WATCH_AFTER, start)
    try:
        return await work
    except asyncio.CancelledError:
        if not left:
            raise
        current.uncancel()  # our own cancellation, turned into an answer nobody will read
        raise ClientClosedRequest("the client closed the connection before the answer was ready") from None
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()
