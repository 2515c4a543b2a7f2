"""Job handlers by kind: registered in code (the container) or named in settings (``job_handlers``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from mistral_gateway.dotted import load_callable
from mistral_gateway.jobs.context import JobContext

__all__ = ["Handler", "HandlerRegistry", "load_handler"]

Handler = Callable[[JobContext], Awaitable[None]]


class HandlerRegistry:
    def __init__(self, specs: Mapping[str, str] | None = None) -> None:
        self._handlers: dict[str, Handler] = {}
        for kind, spec in (specs or {}).items():
            self.register(kind, load_handler(spec))

    def register(self, kind: str, handler: Handler) -> None:
        if not kind or len(kind) > 64:
            raise ValueError(f"job kind must be 1 to 64 characters: {kind!r}")
        if kind in self._handlers:
            raise ValueError(f"a handler for job kind {kind!r} is registered already")
        self._handlers[kind] = handler

    def get(self, kind: str) -> Handler | None:
        return self._handlers.get(kind)

    def kinds(self) -> tuple[str, ...]:
        return tuple(self._handlers)


def load_handler(spec: str) -> Handler:
    """``"package.module:function"`` -> that callable."""
    return load_callable(spec, "job handler")
