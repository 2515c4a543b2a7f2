"""Streamed completions from a llama.cpp server's loopback listener, read on the event loop with aiohttp.

Why on the event loop: the other way, a pool thread reading with a blocking client and handing each chunk to the
loop, costs a thread hand-off per generated token (a wake-up write, GIL ping-pong). With SmolLM2 on 2 cores the
gateway's CPU per streamed token went from ~470 to ~300 us with this module, CPU otherwise taken from llama.cpp's
decode threads. Here a token is one socket read, one line split and one ``orjson.loads`` on the thread that renders
the response anyway.

One connection pool per event loop (the server has one; tests run several). Connections idle for more than
``keepalive_s`` are dropped before llama-server (cpp-httplib) drops them after 5 s. That alone does not prevent
stale connections: our idle clock starts when the gateway's loop releases the connection, llama-server's when it
wrote the answer, and a loop lagging under load (issue 9: 100 clients on 2 cores) can also reuse a connection whose
close it has not yet processed. So a request whose connection failed before any answer (refused, closed, reset,
body not writable) is sent once more, on a connection opened for it: llama.cpp never answered it, and a completion
has no side effect (a reset reaching llama.cpp mid-prompt cancels that slot's work).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson

from mistral_gateway.engines.base import EngineError

__all__ = ["CompletionStream"]

Failure = Callable[[str, Exception], EngineError]  # what a transport failure means (may block: run in a thread)

_PATH = "/v1/completions"
_DATA = b"data: "
_DONE = b"data: [DONE]"


class CompletionStream:
    def __init__(self, address: str, key: str, model_id: str, *, keepalive_s: float = 2.0,
                 connect_timeout_s: float = 30.0) -> None:
        self.address = address.rstrip("/")
        self.model_id = model_id
        self._headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self._keepalive_s = keepalive_s
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=None)
        self._session: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None  # retries: a new connection each, closed after use
        self._loop: asyncio.AbstractEventLoop | None = None

    async def chunks(self, body: dict[str, Any], failure: Failure, path: str = _PATH) -> AsyncIterator[dict[str, Any]]:
        """Each chunk of ``POST /v1/completions`` (or ``path``; ``body`` has ``stream: true``); ``{"error": ...}``
        once when llama.cpp refused the request. Closing the iterator early closes the connection: llama.cpp stops
        the slot."""
        response = await self._send(orjson.dumps(body), failure, path)
        finished = False
        try:
            if response.status != 200:
                yield {"error": _error_of(response.status, await response.read())}
                finished = True
                return
            async for line in response.content:
                if not line.startswith(_DATA) or line.startswith(_DONE):
                    continue
                try:
                    chunk = orjson.loads(line[len(_DATA):])
                except orjson.JSONDecodeError as exc:
                    raise EngineError(f"model {self.model_id!r}: llama.cpp sent a malformed stream chunk: "
                                      f"{line[:200]!r}") from exc
                yield chunk
            finished = True
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise await asyncio.to_thread(failure, path, exc) from exc
        finally:
            if finished:
                response.release()  # read to the end: the connection goes back to the pool
            else:
                response.close()  # abandoned mid-stream: closing the connection stops the generation

    async def _send(self, payload: bytes, failure: Failure, path: str = _PATH) -> aiohttp.ClientResponse:
        session, fresh = self._client()
        try:
            try:
                return await session.post(path, data=payload)
            except aiohttp.ClientConnectionError as exc:
                if isinstance(exc, TimeoutError):  # connecting took too long: a second wait helps no one
                    raise
                # No status line came back: never answered. Not on another pooled connection, maybe stale too.
                return await fresh.post(path, data=payload)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise await asyncio.to_thread(failure, path, exc) from exc

    def _client(self) -> tuple[aiohttp.ClientSession, aiohttp.ClientSession]:
        """This loop's pooled session, and the one for retries (each on a new connection)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._fresh is None or self._loop is not loop or self._session.closed:
            self.close()
            self._session, self._fresh = self._new_session(keepalive=True), self._new_session(keepalive=False)
            self._loop = loop
        return self._session, self._fresh

    def _new_session(self, *, keepalive: bool) -> aiohttp.ClientSession:
        connector = (aiohttp.TCPConnector(limit=0, keepalive_timeout=self._keepalive_s) if keepalive
                     else aiohttp.TCPConnector(limit=0, force_close=True))
        return aiohttp.ClientSession(base_url=self.address, headers=self._headers, timeout=self._timeout,
                                     trust_env=False, connector=connector, skip_auto_headers=("User-Agent",))

    def close(self) -> None:
        """Close the connections, from any thread. aiohttp's public ``close`` is a coroutine, which needs the loop
        to run on afterwards; this runs at engine shutdown or when a dead worker is reaped (maybe off the loop, maybe
        after it closed), so it uses the connector's synchronous part (aiohttp is pinned in constraints.txt)."""
        sessions, loop = (self._session, self._fresh), self._loop
        self._session = self._fresh = self._loop = None
        for session in sessions:
            if session is None or session.closed or session.connector is None:
                continue
            close = session.connector._close
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: its sockets went with it
                if loop is not None and loop.is_running() and loop is not _running_loop():
                    loop.call_soon_threadsafe(close)
                else:
                    close()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _error_of(status: int, content: bytes) -> dict[str, Any]:
    try:
        error = orjson.loads(content).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    if isinstance(error, dict):
        return error
    return {"message": f"HTTP {status}: {error or content[:300].decode('utf-8', 'replace')}"}
