"""Stop a non-streamed request's work when its client leaves.

Starlette cancels nothing when the client of a plain (non-streaming) response disconnects: the handler runs to the
end, e.g. a generation of thousands of tokens nobody will read (issue 9). Once the handler has read the whole body,
the only message the ASGI server still delivers is ``http.disconnect``, so one pending ``receive()`` next to the work
notices it at no cost per token: the work is cancelled, which closes the engine's stream (llama.cpp then stops the
slot). Streamed responses need none of this: Starlette's ``StreamingResponse`` already stops on disconnect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from mistral_gateway.errors import ClientClosedRequest

__all__ = ["unless_disconnected"]

T = TypeVar("T")


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``await work``, cancelled if the client disconnects first (then ``ClientClosedRequest``: nobody reads it).
    Call it only after the request body was read in full. One watcher task per request, none per token."""
    current = asyncio.current_task()
    assert current is not None
    left = False

    async def watch() -> None:
        nonlocal left
        while (await request.receive())["type"] != "http.disconnect":
            pass
        left = True
        current.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if not left:
            raise
        current.uncancel()  # our own cancellation, turned into an answer nobody will read
        raise ClientClosedRequest("the client closed the connection before the answer was ready") from None
    finally:
        watcher.cancel()
