"""``Client``: the blocking client for the LowCodeAPI dialect."""

from __future__ import annotations

import os
from typing import Any

import httpx

from mistral_gateway.client.base import ClientBase
from mistral_gateway.client.calls import prepare
from mistral_gateway.client.errors import ApiConnectionError
from mistral_gateway.client.naming import MethodSpec
from mistral_gateway.client.responses import DownloadSink, Stream, parse_json
from mistral_gateway.client.retry import RetryPolicy
from mistral_gateway.client.transport import SyncTransport
from mistral_gateway.registry import Operation, Registry

__all__ = ["Client"]


class Client(ClientBase):
    """``Client(base_url, api_token)``; one method per registry operation, e.g. ``client.chat.complete(...)``,
    ``client.files.upload("train.jsonl", purpose="fine-tune")``. Use it as a context manager, or ``close()`` it.
    """

    def __init__(self, base_url: str | None = None, api_token: str | None = None, *, provider: str = "mistralai",
                 cache_path: str | os.PathLike[str] | None = None, remember_format: bool = True,
                 retry: RetryPolicy | None = None, timeout: float | httpx.Timeout | None = None,
                 registry: Registry | None = None, transport: httpx.BaseTransport | None = None,
                 event_hooks: dict[str, list[Any]] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(base_url, api_token, provider=provider, cache_path=cache_path,
                         remember_format=remember_format, retry=retry, timeout=timeout, registry=registry)
        self.http = httpx.Client(**self._http_kwargs(transport, event_hooks, headers))
        self._transport = SyncTransport(self.http, self.base_url, self.api_token, self.retry, self._chooser)

    def _invoke(self, op: Operation, spec: MethodSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = prepare(op, args, kwargs, stream=spec.stream, label=spec.qualname)
        with call.opened_files() as files:
            response = self._transport.send(call, files)
        if spec.stream:
            return Stream(response, op)
        try:
            if call.binary:
                sink = DownloadSink(response, call.to, call.progress)
                try:
                    for chunk in response.iter_bytes():
                        sink.write(chunk)
                except BaseException:
                    sink.abort()
                    raise
                return sink.finish()
            raw = response.read()
        except httpx.TransportError as exc:
            raise ApiConnectionError(f"connection to {self.base_url} lost while reading the answer: {exc}") from exc
        finally:
            response.close()
        return parse_json(op, response, raw)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
