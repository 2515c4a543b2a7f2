"""``AsyncClient``: the asyncio/trio client for the LowCodeAPI dialect (same methods as ``Client``, awaited)."""

from __future__ import annotations

import os
from typing import Any

import httpx

from mistral_gateway.client.base import ClientBase
from mistral_gateway.client.calls import prepare
from mistral_gateway.client.errors import ApiConnectionError
from mistral_gateway.client.naming import MethodSpec
from mistral_gateway.client.responses import AsyncStream, DownloadSink, parse_json
from mistral_gateway.client.retry import RetryPolicy
from mistral_gateway.client.transport import AsyncTransport
from mistral_gateway.registry import Operation, Registry

__all__ = ["AsyncClient"]


class AsyncClient(ClientBase):
    """``await client.chat.complete(...)``; streaming methods return an ``AsyncStream`` once the answer has
    started: ``async for chunk in await client.chat.stream(...)``. Use ``async with`` or ``await aclose()``.

    Upload bodies are read from their files by httpx's multipart encoder inside the event loop (local files;
    small blocking reads), and the format memory is read and written in a worker thread.
    """

    def __init__(self, base_url: str | None = None, api_token: str | None = None, *, provider: str = "mistralai",
                 cache_path: str | os.PathLike[str] | None = None, remember_format: bool = True,
                 retry: RetryPolicy | None = None, timeout: float | httpx.Timeout | None = None,
                 registry: Registry | None = None, transport: httpx.AsyncBaseTransport | None = None,
                 event_hooks: dict[str, list[Any]] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(base_url, api_token, provider=provider, cache_path=cache_path,
                         remember_format=remember_format, retry=retry, timeout=timeout, registry=registry)
        self.http = httpx.AsyncClient(**self._http_kwargs(transport, event_hooks, headers))
        self._transport = AsyncTransport(self.http, self.base_url, self.api_token, self.retry, self._chooser)

    async def _invoke(self, op: Operation, spec: MethodSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = prepare(op, args, kwargs, stream=spec.stream, label=spec.qualname)
        with call.opened_files() as files:
            response = await self._transport.send(call, files)
        if spec.stream:
            return AsyncStream(response, op)
        try:
            if call.binary:
                sink = DownloadSink(response, call.to, call.progress)
                try:
                    async for chunk in response.aiter_bytes():
                        sink.write(chunk)
                except BaseException:
                    sink.abort()
                    raise
                return sink.finish()
            raw = await response.aread()
        except httpx.TransportError as exc:
            raise ApiConnectionError(f"connection to {self.base_url} lost while reading the answer: {exc}") from exc
        finally:
            await response.aclose()
        return parse_json(op, response, raw)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
