"""The shape of one registry row, and of the parameters derived for it from Mistral's spec."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["PATH_PARAM", "BodyKind", "Operation", "Param", "ResponseKind", "StreamMode", "UpstreamKind",
           "path_param_names"]

StreamMode = Literal["never", "optional", "always"]
BodyKind = Literal["none", "json", "multipart"]
ResponseKind = Literal["json", "binary", "empty"]  # the non-streamed answer; SSE is ``stream`` + ``chunk``
# How a model-routed operation is sent to an upstream ("classifier", "ocr": native upstreams only, the body unchanged).
UpstreamKind = Literal["chat", "fim", "embeddings", "classifier", "ocr"]

# The one pattern for ``{name}`` path parameters (routing, the client, the documents all use it).
PATH_PARAM = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")


def path_param_names(path: str) -> tuple[str, ...]:
    return tuple(PATH_PARAM.findall(path))


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    location: Literal["path", "query", "body"]
    type: str  # a short JSON-schema type name: string, integer, number, boolean, array, object, file
    required: bool = False
    description: str = ""
    default: Any = None
    items: str | None = None  # item type for arrays
    limits: dict[str, Any] = field(default_factory=dict, compare=False)  # JSON-schema limits the server enforces


@dataclass(frozen=True, slots=True)
class Operation:
    """One API operation. ``path`` is Mistral's native path; the LowCodeAPI paths are derived from it."""

    id: str  # snake_case, stable: used for client method names and handler lookup
    name: str  # the seed's name, exactly
    category: str  # the seed's category
    method: str
    path: str
    operation_id: str  # Mistral's operationId
    scope: str  # token scope required (category-level)
    body: BodyKind = "none"
    stream: StreamMode = "never"
    status: int = 200  # success status
    implemented: bool = False  # built in this gateway (the HTTP layer binds a handler by ``id``); else 501
    request: type | None = None  # pydantic model validating the body (implemented operations)
    query: type | None = None  # pydantic model validating query parameters
    response: type | None = None  # pydantic model of the success body
    deprecated: bool = False
    twin: str | None = None  # another operation served by the same route (chosen by the body's ``stream``)
    response_kind: ResponseKind = "json"
    chunk: type | None = None  # pydantic model of each SSE event (streaming operations); None: plain JSON events
    client: str | None = None  # ``namespace.method`` when the client's naming rule would name it badly
    upstream: UpstreamKind | None = None  # model-routed: requests for upstream-routed models are forwarded
    openai_path: str | None = None  # the path on an OpenAI-compatible upstream (native upstreams get ``path``)
    # batch lines may run this operation: a job names its path as ``endpoint`` (agent completions: a job's agent_id)
    batchable: bool = False
    # further methods routed to this operation: the SDK 3.x sends PATCH where Mistral's spec (and the seed) say PUT
    method_aliases: tuple[str, ...] = ()
    # one of the seed's 55 operations; extras (``seed=False``) are further spec operations served the same way
    seed: bool = True
    # Derived from the spec at registry load; not written in the table.
    path_params: tuple[Param, ...] = field(default=(), compare=False)
    query_params: tuple[Param, ...] = field(default=(), compare=False)
    body_params: tuple[Param, ...] = field(default=(), compare=False)

    @property
    def path_param_names(self) -> tuple[str, ...]:
        return path_param_names(self.path)

    @property
    def lowcode_path(self) -> str:
        """New format: ``/mistralai/v1/files/{file_id}``."""
        return "/mistralai" + self.path

    @property
    def old_format_path(self) -> str:
        """Old format: the path parameter's name stays in the path, its value moves to the query."""
        return "/mistralai" + self.path.replace("{", "").replace("}", "")
