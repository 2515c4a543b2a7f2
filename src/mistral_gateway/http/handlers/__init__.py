"""Handlers: one async function per implemented operation, named in the registry as ``module:function``."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request

from mistral_gateway.http.bodies import parse_query, read_json_object, validate_body
from mistral_gateway.registry import Operation
from mistral_gateway.services.container import Services
from mistral_gateway.services.tokens import Principal

__all__ = ["Call", "Handler", "Meter", "load_handler"]


@dataclass
class Meter:
    """What one request used, filled in by its handler (for streams: by the time the stream ends) and recorded as
    a usage row and against tokens-per-minute budgets. ``backend`` is ``local`` or the upstream's name."""

    model: str | None = None
    backend: str = "local"
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Call:
    op: Operation
    request: Request
    principal: Principal
    path: dict[str, str]
    services: Services
    dialect: str
    old_format: bool = False
    meter: Meter = field(default_factory=Meter)
    body: dict[str, Any] | None = None  # the JSON body as sent, once read (upstreams get it unchanged)

    @property
    def workspace_id(self) -> str:
        return self.principal.workspace_id

    def query(self) -> Any:
        """The query string validated by the operation's query model (old-format path params excluded)."""
        assert self.op.query is not None, f"{self.op.id} declares no query model"
        return parse_query(self.op.query, self.request.query_params, frozenset(self.path))

    async def json(self) -> Any:
        assert self.op.request is not None, f"{self.op.id} declares no request model"
        if self.body is None:
            self.body = await read_json_object(self.request, self.services.settings.max_json_body_bytes)
        return validate_body(self.op.request, self.body)

    def base_url(self) -> str:
        return self.services.settings.public_base_url or str(self.request.base_url)


Handler = Callable[[Call], Awaitable[BaseModel | Any]]


def load_handler(ref: str) -> Handler:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(f"mistral_gateway.http.handlers.{module}"), name)
