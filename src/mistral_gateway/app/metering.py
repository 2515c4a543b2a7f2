"""Per-request admission, metering and usage recording: the same for a request over HTTP and a batch line.

An ``Exchange`` follows one request from authentication on (or one job line). ``admit`` applies the principal's rate
limits (nothing at all for unlimited principals); ``stream`` meters an SSE stream as it passes (the model and
``usage`` from its chunks; content chunks counted as completion tokens until ``usage`` arrives, so a stream cut
short still records the tokens sent so far); ``finish`` — exactly once per request — counts the tokens against TPM
budgets, releases the concurrency lease and queues the usage row. A stream that ends normally finishes before its
``[DONE]`` is sent, so a client that reads it and sends its next request never meets its own lease; a stream the
client abandons finishes with status 499 when the response is torn down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from anyio import CancelScope
from pydantic import BaseModel

from mistral_gateway.app.results import RawEvents, StreamResult
from mistral_gateway.errors import GatewayError
from mistral_gateway.registry import Operation
from mistral_gateway.services.container import Services
from mistral_gateway.services.limits import Ticket
from mistral_gateway.services.tokens import Principal

__all__ = ["CLIENT_CLOSED", "Exchange", "Meter", "Metering", "meter_completion", "meter_json_usage"]

log = logging.getLogger("mistral_gateway.app")

CLIENT_CLOSED = 499  # recorded when the client went away before the stream ended (nginx's convention)


@dataclass(slots=True)
class Meter:
    """What one request used, filled in by its operation (for streams: by the time the stream ends) and recorded
    as a usage row and against tokens-per-minute budgets. ``backend`` is ``local`` or the upstream's name."""

    model: str | None = None
    backend: str = "local"
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(slots=True)
class Exchange:
    started: float = 0.0  # time.time() when the request arrived (the endpoint sets it: cheaper than factories)
    op: Operation | None = None
    principal: Principal | None = None  # None: not authenticated, nothing is recorded
    dialect: str = "native"  # recorded with the usage row
    admitted: bool = False  # rate limits checked (a ticket, or None for unlimited principals)
    ticket: Ticket | None = None
    meter: Meter = field(default_factory=Meter)
    stream_status: int | None = None  # set while an SSE stream is open, and if it fails
    finished: bool = False


class Metering:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def admit(self, exchange: Exchange) -> None:
        """Rate limits (429); unlimited principals skip the limiter entirely. Once per exchange."""
        assert exchange.principal is not None
        if not exchange.admitted:
            exchange.admitted = True
            if self.services.limits.buckets(exchange.principal):
                exchange.ticket = await self.services.limits.admit(exchange.principal)

    def stream(self, result: StreamResult, exchange: Exchange) -> StreamResult:
        exchange.stream_status = CLIENT_CLOSED  # until the stream runs to its end
        return replace(result, chunks=self._metered(result.chunks, exchange))

    def relay(self, result: RawEvents, exchange: Exchange) -> RawEvents:
        """An upstream's framed stream (its usage reaches the meter through the relay): finished at its end."""
        return RawEvents(self._relayed(result.chunks, exchange))

    async def _relayed(self, chunks: AsyncIterator[bytes], exchange: Exchange) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield chunk
        await self.finish(exchange, 200)

    def count_unmetered(self, exchange: Exchange, status: int) -> None:
        """A request refused before it had a principal (401, unknown route): counted in the metrics only."""
        op = exchange.op.id if exchange.op is not None else "unmatched"
        self.services.metrics.request(op, exchange.dialect, status, time.time() - exchange.started)

    async def finish(self, exchange: Exchange, status: int) -> None:
        if exchange.finished or exchange.principal is None or exchange.op is None:
            return
        exchange.finished = True
        meter, principal = exchange.meter, exchange.principal
        status, seconds = exchange.stream_status or status, time.time() - exchange.started
        self.services.usage.record_row((  # usage_row order: UsageRecord's fields
            int(exchange.started), principal.token_id, principal.workspace_id, principal.workspace, exchange.op.id,
            meter.model, meter.backend, exchange.dialect, status, round(seconds * 1000, 3), meter.prompt_tokens,
            meter.completion_tokens))
        self.services.metrics.request(exchange.op.id, exchange.dialect, status, seconds, model=meter.model,
                                      prompt_tokens=meter.prompt_tokens, completion_tokens=meter.completion_tokens)
        if exchange.ticket is not None:
            with CancelScope(shield=True):  # also when the request is being cancelled: the lease must go back
                try:
                    await self.services.limits.settle(exchange.ticket, meter.prompt_tokens + meter.completion_tokens)
                except Exception:  # the lease lapses on its own; the response is not lost for it
                    log.exception("settling rate limits for %s failed", exchange.op.id)

    async def _metered(self, chunks: AsyncIterator[BaseModel], exchange: Exchange) -> AsyncIterator[BaseModel]:
        meter, reported = exchange.meter, False
        try:
            async for chunk in chunks:
                usage = getattr(chunk, "usage", None)
                if usage is not None:
                    meter.prompt_tokens, meter.completion_tokens = _billed(usage)
                    reported = True
                elif not reported and _has_content(chunk):
                    meter.completion_tokens += 1
                if meter.model is None:
                    meter.model = getattr(chunk, "model", None)
                yield chunk
        except GatewayError as err:
            exchange.stream_status = err.status
            raise
        except Exception:
            exchange.stream_status = 500
            raise
        else:
            exchange.stream_status = None
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()
        await self.finish(exchange, 200)  # before sse_events sends [DONE]


def _billed(usage: Any) -> tuple[int, int]:
    """(prompt, completion) tokens for the usage row and token budgets. Audio counts by the second, as a realtime
    session's does (``app.realtime``): a transcription's ``prompt_audio_seconds`` stand in for its prompt tokens."""
    audio = getattr(usage, "prompt_audio_seconds", None)
    return (audio if audio else usage.prompt_tokens), usage.completion_tokens


def _has_content(chunk: Any) -> bool:
    return any(getattr(getattr(c, "delta", None), "content", None) for c in getattr(chunk, "choices", None) or ())


def meter_completion(meter: Meter, response: Any) -> Any:
    """Fill the meter from a JSON completion (its ``model`` and ``usage``); returns the response."""
    meter.model = getattr(response, "model", None) or meter.model
    usage = getattr(response, "usage", None)
    if usage is not None:
        meter.prompt_tokens, meter.completion_tokens = _billed(usage)
    return response


def meter_json_usage(meter: Meter, body: bytes) -> bytes:
    """Fill the meter from a rendered body whose last member is ``usage`` (embeddings), without parsing the rest
    (which may be megabytes of vectors); returns the body."""
    at = body.rfind(b'"usage":')
    if at >= 0:
        try:
            usage = orjson.loads(body[at + len(b'"usage":'):-1])
            meter.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            meter.completion_tokens = int(usage.get("completion_tokens") or 0)
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            log.warning("no usage found at the end of a response body")
    return body
