"""What an application-layer operation gets besides its request: who calls, the registry row, the meter, and the
request's other parts (path parameters, the parsed query, the body as sent)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from mistral_gateway.app.metering import Meter
from mistral_gateway.registry import Operation
from mistral_gateway.services.container import Services
from mistral_gateway.services.tokens import Principal

__all__ = ["NO_PATH", "Context", "Guard", "Work"]

T = TypeVar("T")
Guard = Callable[[Awaitable[Any]], Awaitable[Any]]  # wraps blocking-for-an-answer work (HTTP: stop if the client left)
NO_PATH: Mapping[str, str] = MappingProxyType({})


@dataclass(slots=True)
class Context:
    services: Services
    op: Operation
    principal: Principal
    meter: Meter
    raw: dict[str, Any] | None  # the JSON body as sent (upstreams get it unchanged), if the caller has it
    request: Any  # the parsed body: the row's request model, or an operation's own input (an upload)
    guard: Guard | None = None
    path: Mapping[str, str] = field(default_factory=lambda: NO_PATH)  # the row's path parameters by name
    query: Any = None  # the parsed query string: the row's query model
    base_url: str | None = None  # where clients reach this server (links it hands out); else public_base_url

    @property
    def body(self) -> dict[str, Any]:
        if self.raw is None:
            self.raw = self.request.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return self.raw

    @property
    def workspace_id(self) -> str:
        return self.principal.workspace_id

    async def guarded(self, work: Awaitable[T]) -> T:
        return await (self.guard(work) if self.guard is not None else work)


# An operation: (context, request) -> a result whose type the function's return annotation declares (app.kinds).
Work = Callable[[Context, Any], Awaitable[Any]]
