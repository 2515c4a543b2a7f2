"""What ``Client`` and ``AsyncClient`` share: configuration, the format memory and the registry-built namespaces."""

from __future__ import annotations

import os
from typing import Any

import httpx

from mistral_gateway.client.formats import Format, FormatMemory
from mistral_gateway.client.namespaces import (
    Namespace,
    build_namespaces,
    default_registry,
    resolve_base_url,
    resolve_token,
)
from mistral_gateway.client.naming import MethodSpec
from mistral_gateway.client.retry import RetryPolicy
from mistral_gateway.client.transport import FormatChooser
from mistral_gateway.registry import Operation, Registry

__all__ = ["DEFAULT_TIMEOUT", "ClientBase"]

# Generous reads: a non-streamed completion on a CPU sends nothing until it is done.
DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)


class ClientBase:
    """Arguments (all optional):

    - ``base_url``: the gateway, without ``/mistralai`` (default ``$MISTRAL_GATEWAY_BASE_URL`` or
      ``http://127.0.0.1:8080``); ``api_token``: sent as ``?api_token=`` (default ``$MISTRAL_GATEWAY_TOKEN``).
    - ``cache_path``: the format-memory file (default ``$MISTRAL_GATEWAY_CLIENT_CACHE`` or
      ``~/.cache/mistral-gateway/formats.json``); ``remember_format=False`` keeps the memory in this object only.
    - ``retry``: a ``RetryPolicy`` (``RetryPolicy(max_retries=0)`` disables retries); ``timeout``: httpx's.
    - ``transport``, ``event_hooks``, ``headers``: passed to the underlying httpx client.
    """

    chat: Namespace
    fim: Namespace
    embeddings: Namespace
    files: Namespace
    fine_tuning: Namespace
    models: Namespace
    batch: Namespace
    agents: Namespace
    moderation: Namespace
    classification: Namespace
    ocr: Namespace
    audio: Namespace
    conversations: Namespace
    libraries: Namespace

    def __init__(self, base_url: str | None = None, api_token: str | None = None, *, provider: str = "mistralai",
                 cache_path: str | os.PathLike[str] | None = None, remember_format: bool = True,
                 retry: RetryPolicy | None = None, timeout: float | httpx.Timeout | None = None,
                 registry: Registry | None = None) -> None:
        self.base_url = resolve_base_url(base_url)
        self.api_token = resolve_token(api_token)
        self.provider = provider
        self.retry = retry or RetryPolicy()
        self.timeout = timeout if timeout is not None else DEFAULT_TIMEOUT
        self.registry = registry or default_registry()
        memory = FormatMemory(cache_path) if remember_format else None
        self._chooser = FormatChooser(self.base_url, provider, memory)
        self._namespaces = build_namespaces(self.registry, self._invoke)
        for name, namespace in self._namespaces.items():
            setattr(self, name, namespace)

    def _invoke(self, op: Operation, spec: MethodSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    @property
    def format_memory(self) -> FormatMemory | None:
        return self._chooser.memory

    @property
    def url_format(self) -> Format | None:
        """The LowCodeAPI URL format known to work for this base URL (None until a call with path parameters)."""
        return self._chooser.current

    def methods(self) -> dict[str, str]:
        """Every client method (``"files.retrieve"``) and the registry operation id it calls."""
        return {m.spec.qualname: m.operation.id for ns in self._namespaces.values() for m in ns}

    def operation(self, op_id: str) -> Any:
        """The first method calling registry operation ``op_id`` (its non-streaming form when there are two)."""
        for namespace in self._namespaces.values():
            for method in namespace:
                if method.operation.id == op_id:
                    return method
        raise KeyError(op_id)

    def _http_kwargs(self, transport: Any, event_hooks: Any, headers: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"base_url": self.base_url, "timeout": self.timeout, "follow_redirects": False,
                                  "headers": {"User-Agent": "mistral-gateway-client", **(headers or {})}}
        if transport is not None:
            kwargs["transport"] = transport
        if event_hooks is not None:
            kwargs["event_hooks"] = event_hooks
        return kwargs

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_url} format={self.url_format or 'unknown'}>"
