"""Sending one prepared call: the LowCodeAPI URL-format decision flow, and retries with backoff.

Decision flow (the seed's): an operation with path parameters is sent in the format remembered for this base URL
(the new one when nothing is remembered). If the server answers that it does not know the route in that format, the
call is sent again in the other format; whichever format the server accepts is remembered (in memory and in the
cache file) and logged at debug level. "Does not know the route" means: a 404 whose code is ``ROUTE_NOT_FOUND``, a
404 without a gateway error body (a proxy's or another server's page), or a 400 saying the format is disabled
(``NEW_FORMAT_DISABLED`` / ``OLD_FORMAT_DISABLED``). A 404 naming a resource (``FILE_NOT_FOUND``) proves the route
exists in that format, so it is raised at once instead of costing a second request. Operations without path
parameters have one URL in both formats and never fall back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx

from mistral_gateway.client.calls import PreparedCall
from mistral_gateway.client.errors import ApiConnectionError, error_for, parse_error_body
from mistral_gateway.client.formats import Format, FormatMemory, format_path
from mistral_gateway.client.retry import RETRY_STATUSES, RetryPolicy

__all__ = ["AsyncTransport", "FormatChooser", "SyncTransport", "is_format_rejection"]

log = logging.getLogger("mistral_gateway.client")

_REJECTION_CODES = frozenset({"ROUTE_NOT_FOUND", "NEW_FORMAT_DISABLED", "OLD_FORMAT_DISABLED"})


def is_format_rejection(status: int, raw: bytes) -> bool:
    """True when an error answer says the URL format (not the resource) is the problem."""
    if status not in (400, 404):
        return False
    error, _ = parse_error_body(raw)
    code = error.get("code") if error else None
    if code in _REJECTION_CODES:
        return True
    return status == 404 and not code


class FormatChooser:
    """The format to try first for one base URL and provider, backed by the shared cache file (if any)."""

    def __init__(self, base_url: str, provider: str, memory: FormatMemory | None) -> None:
        self.base_url = base_url
        self.provider = provider
        self.memory = memory
        self.current: Format | None = None
        self.loaded = memory is None

    def load(self) -> None:
        if not self.loaded:
            self.loaded = True
            assert self.memory is not None
            self.current = self.current or self.memory.get(self.base_url, self.provider)

    def order(self) -> list[Format]:
        first: Format = self.current or "new"
        return [first, "old" if first == "new" else "new"]

    def learn(self, fmt: Format) -> bool:
        """Record that ``fmt`` works; True when that is news (so the caller persists it)."""
        if fmt == self.current:
            return False
        self.current = fmt
        log.debug("LowCodeAPI %s format works for %s (provider %s)", fmt, self.base_url, self.provider)
        return True


class _Base:
    def __init__(self, base_url: str, token: str | None, retry: RetryPolicy, chooser: FormatChooser) -> None:
        self.base_url = base_url
        self.token = token
        self.retry = retry
        self.chooser = chooser

    def _request(self, http: httpx.Client | httpx.AsyncClient, call: PreparedCall, fmt: Format | None,
                 files: dict[str, Any]) -> httpx.Request:
        path, extra = format_path(call.op.path, call.path_values, fmt or "new")
        params: dict[str, Any] = {**call.query, **extra}
        if self.token:
            params["api_token"] = self.token
        accept = "text/event-stream" if call.stream else "*/*" if call.binary else "application/json"
        return http.build_request(call.op.method, path, params=params, json=call.json, data=call.form or None,
                                  files=files or None, headers={"Accept": accept})

    def _formats(self, call: PreparedCall) -> list[Format | None]:
        return list(self.chooser.order()) if call.path_values else [None]

    def _judge(self, fmt: Format | None, response: httpx.Response, raw: bytes | None,
               last: bool) -> tuple[str, Format | None]:
        """("ok" | "fallback" | "error", the format to persist when this answer taught us something new)."""
        status = response.status_code
        rejected = raw is not None and is_format_rejection(status, raw)
        # Any answer past routing proves the format (our server resolves it before auth); 429/502-504 may come
        # from in front of the router, so they prove nothing.
        proven = fmt is not None and not rejected and status not in RETRY_STATUSES
        learned = fmt if proven and fmt is not None and self.chooser.learn(fmt) else None
        if status < 400:
            return "ok", learned
        if rejected and fmt is not None and not last:
            log.debug("LowCodeAPI %s format refused for %s %s (HTTP %d); trying the other format", fmt,
                      response.request.method, response.request.url.path, status)
            return "fallback", learned
        return "error", learned

    def _unreachable(self, request: httpx.Request, exc: httpx.TransportError) -> ApiConnectionError:
        # Never the full URL: it carries the token.
        return ApiConnectionError(f"cannot reach {self.base_url} ({request.method} {request.url.path}): "
                                  f"{exc or type(exc).__name__}")


class SyncTransport(_Base):
    def __init__(self, http: httpx.Client, *args: Any, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(*args)
        self.http = http
        self.sleep = sleep

    def send(self, call: PreparedCall, files: dict[str, Any]) -> httpx.Response:
        """The response (streaming, not read yet) of the first successful attempt; raises the typed error."""
        if call.path_values:
            self.chooser.load()
        formats = self._formats(call)
        for i, fmt in enumerate(formats):
            response = self._send_retrying(call, fmt, files)
            raw = None if response.status_code < 400 else _read_and_close(response)
            outcome, learned = self._judge(fmt, response, raw, last=i == len(formats) - 1)
            if learned is not None and self.chooser.memory is not None:
                self.chooser.memory.set(self.chooser.base_url, self.chooser.provider, learned)
            if outcome == "ok":
                return response
            if outcome == "error":
                raise error_for(response.status_code, raw or b"", response.headers)
        raise AssertionError("unreachable")

    def _send_retrying(self, call: PreparedCall, fmt: Format | None, files: dict[str, Any]) -> httpx.Response:
        attempt = 0
        while True:
            request = self._request(self.http, call, fmt, files)
            try:
                response = self.http.send(request, stream=True)
            except httpx.TransportError as exc:
                delay = self.retry.delay_for_error(request.method, exc, attempt)
                if delay is None:
                    raise self._unreachable(request, exc) from exc
            else:
                delay = self.retry.delay_for_response(request.method, response, attempt)
                if delay is None:
                    return response
                response.close()
            log.debug("retrying %s %s in %.2fs (attempt %d)", request.method, request.url.path, delay, attempt + 2)
            self.sleep(delay)
            attempt += 1


class AsyncTransport(_Base):
    def __init__(self, http: httpx.AsyncClient, *args: Any, sleep: Callable[[float], Any] = anyio.sleep) -> None:
        super().__init__(*args)
        self.http = http
        self.sleep = sleep

    async def send(self, call: PreparedCall, files: dict[str, Any]) -> httpx.Response:
        if call.path_values and not self.chooser.loaded:
            await anyio.to_thread.run_sync(self.chooser.load)  # a file read: off the event loop
        formats = self._formats(call)
        for i, fmt in enumerate(formats):
            response = await self._send_retrying(call, fmt, files)
            raw = None if response.status_code < 400 else await _aread_and_close(response)
            outcome, learned = self._judge(fmt, response, raw, last=i == len(formats) - 1)
            if learned is not None and (memory := self.chooser.memory) is not None:
                await anyio.to_thread.run_sync(memory.set, self.chooser.base_url, self.chooser.provider, learned)
            if outcome == "ok":
                return response
            if outcome == "error":
                raise error_for(response.status_code, raw or b"", response.headers)
        raise AssertionError("unreachable")

    async def _send_retrying(self, call: PreparedCall, fmt: Format | None, files: dict[str, Any]) -> httpx.Response:
        attempt = 0
        while True:
            request = self._request(self.http, call, fmt, files)
            try:
                response = await self.http.send(request, stream=True)
            except httpx.TransportError as exc:
                delay = self.retry.delay_for_error(request.method, exc, attempt)
                if delay is None:
                    raise self._unreachable(request, exc) from exc
            else:
                delay = self.retry.delay_for_response(request.method, response, attempt)
                if delay is None:
                    return response
                await response.aclose()
            log.debug("retrying %s %s in %.2fs (attempt %d)", request.method, request.url.path, delay, attempt + 2)
            await self.sleep(delay)
            attempt += 1


def _read_and_close(response: httpx.Response) -> bytes:
    try:
        return response.read()
    finally:
        response.close()


async def _aread_and_close(response: httpx.Response) -> bytes:
    try:
        return await response.aread()
    finally:
        await response.aclose()
