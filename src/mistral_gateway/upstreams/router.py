"""Per-model routing: a model's targets in order (``local`` or an upstream), trying the next one when a target
does not answer, times out or answers with a fallback status — before anything has been relayed, never after.

Native kinds (``mistral``, ``mistral-gateway``) get the caller's JSON body unchanged but for the model name, and
their answer is relayed byte for byte; the ``openai`` kind goes through ``upstreams.openai``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from mistral_gateway.config import ModelEntry
from mistral_gateway.errors import BadGateway, GatewayError, ServiceUnavailable
from mistral_gateway.registry import Operation, UpstreamKind
from mistral_gateway.upstreams import openai
from mistral_gateway.upstreams.client import UNANSWERED, UpstreamClient
from mistral_gateway.upstreams.errors import upstream_error
from mistral_gateway.upstreams.relay import Usage, relay_raw, relay_translated, usage_sink

__all__ = ["Relayed", "RelayedStream", "Router"]

log = logging.getLogger("mistral_gateway.upstreams")


@dataclass(frozen=True, slots=True)
class Relayed:
    """An upstream's JSON body, ready to send (already in Mistral's shape)."""

    body: bytes
    backend: str


@dataclass(frozen=True, slots=True)
class RelayedStream:
    """Server-sent events, already framed; relayed as they arrive."""

    chunks: AsyncIterator[bytes]
    backend: str


class Router:
    def __init__(self, upstreams: Mapping[str, UpstreamClient]) -> None:
        self.upstreams = dict(upstreams)

    async def aclose(self) -> None:
        for client in self.upstreams.values():
            await client.aclose()

    @staticmethod
    def routes(entry: ModelEntry | None) -> bool:
        """Whether requests for this entry go through the router (it names at least one upstream)."""
        return entry is not None and any(r.upstream != "local" for r in entry.routes)

    async def forward(self, op: Operation, entry: ModelEntry, body: dict[str, Any], *, stream: bool, usage: Usage,
                      local: Callable[[str | None], Awaitable[Any]]) -> Any:
        """The first target that answers: ``local(model)``'s result (``model``: the local catalog entry to use,
        None for this entry's own engine), a ``Relayed`` or a ``RelayedStream``. ``op`` is a model-routed registry
        row: its ``upstream`` kind, ``path`` (native upstreams) and ``openai_path`` say how it is sent."""
        assert op.upstream is not None, f"{op.id} is not a model-routed operation"
        requested = str(body.get("model") or entry.id)
        usage.model = requested
        targets = entry.routes
        failures: list[str] = []
        for i, target in enumerate(targets):
            last = i == len(targets) - 1
            if target.upstream == "local":
                try:
                    return await local(target.model if target.model not in (None, entry.id) else None)
                except ServiceUnavailable as exc:
                    if last:
                        raise
                    failures.append(f"local: {exc.message}")
                    continue
            client = self.upstreams[target.upstream]
            try:
                result = await self._try(client, op, body, target.model or entry.id, requested, stream, usage,
                                         final=last)
            except UNANSWERED as exc:
                if last:
                    if failures:
                        exc.message += f" (earlier targets: {'; '.join(failures)})"
                    raise
                failures.append(exc.message)
                log.warning("model %r: %s; trying the next target", requested, exc.message)
                continue
            if isinstance(result, GatewayError):  # a fallback status, and a next target exists
                failures.append(f"{client.name}: {result.status} {result.message}")
                log.warning("model %r: upstream %r answered %d; trying the next target", requested, client.name,
                            result.status)
                continue
            return result
        raise AssertionError("a model with routes always has a last target")  # pragma: no cover

    async def _try(self, client: UpstreamClient, op: Operation, body: dict[str, Any], model: str, requested: str,
                   stream: bool, usage: Usage, *, final: bool) -> Relayed | RelayedStream | GatewayError:
        is_openai = client.kind == "openai"
        kind = op.upstream
        assert kind is not None
        if is_openai and op.openai_path is None:  # e.g. moderations: no OpenAI-compatible translation
            err = BadGateway(f"upstream {client.name!r} is OpenAI-compatible and cannot serve {op.name}",
                             code="UPSTREAM_UNSUPPORTED")
            if not final:
                return err
            raise err
        payload = _payload(kind, body, model, is_openai)
        path = (op.openai_path or op.path) if is_openai else op.path
        exchange = await client.open("POST", path, json=payload,
                                     headers={"Accept": "text/event-stream" if stream else "application/json",
                                              "Accept-Encoding": "identity"})
        status = exchange.status
        if status >= 400:
            raw = await exchange.read()
            err = upstream_error(client.name, status, raw, exchange.headers)
            if not final and status in client.entry.fallback_statuses:
                return err
            raise err
        usage.backend = client.name
        on_usage = usage_sink(usage)
        if stream:
            if is_openai:
                translator = openai.ChunkTranslator(requested, fim=kind == "fim")
                return RelayedStream(relay_translated(
                    exchange, lambda p: translator.finish() if p is None else translator.feed(p), on_usage),
                    client.name)
            return RelayedStream(relay_raw(exchange, on_usage), client.name)
        raw = await exchange.read()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise upstream_error(client.name, 502, raw, {}) from None
        if is_openai:
            data = _from_openai(kind, data, requested)
            raw = orjson.dumps(data)
        tokens = data.get("usage") if isinstance(data, dict) else None
        if isinstance(tokens, dict):
            on_usage(int(tokens.get("prompt_tokens") or 0), int(tokens.get("completion_tokens") or 0))
        return Relayed(raw, client.name)


def _payload(kind: UpstreamKind, body: dict[str, Any], model: str, is_openai: bool) -> dict[str, Any]:
    if not is_openai:
        return {**body, "model": model}
    if kind == "chat":
        return openai.chat_request(body, model)
    if kind == "fim":
        return openai.fim_request(body, model)
    return openai.embeddings_request(body, model)


def _from_openai(kind: UpstreamKind, data: dict[str, Any], requested: str) -> dict[str, Any]:
    if kind == "chat":
        return openai.chat_response(data, requested)
    if kind == "fim":
        return openai.fim_response(data, requested)
    return openai.embeddings_response(data, requested)

