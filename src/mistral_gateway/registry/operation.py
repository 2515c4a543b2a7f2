"""The shape of one registry row, and of the parameters derived for it from Mistral's spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["BodyKind", "Operation", "Param", "StreamMode"]

StreamMode = Literal["never", "optional", "always"]
BodyKind = Literal["none", "json", "multipart"]


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
    handler: str | None = None  # "module:function" under mistral_gateway.http.handlers; None = not yet built
    request: type | None = None  # pydantic model validating the body (implemented operations)
    query: type | None = None  # pydantic model validating query parameters
    response: type | None = None  # pydantic model of the success body
    deprecated: bool = False
    twin: str | None = None  # another operation served by the same route (chosen by the body's ``stream``)
    # Derived from the spec at registry load; not written in the table.
    path_params: tuple[Param, ...] = field(default=(), compare=False)
    query_params: tuple[Param, ...] = field(default=(), compare=False)
    body_params: tuple[Param, ...] = field(default=(), compare=False)

    @property
    def implemented(self) -> bool:
        return self.handler is not None

    @property
    def lowcode_path(self) -> str:
        """New format: ``/mistralai/v1/files/{file_id}``."""
        return "/mistralai" + self.path

    @property
    def old_format_path(self) -> str:
        """Old format: the path parameter's name stays in the path, its value moves to the query."""
        return "/mistralai" + self.path.replace("{", "").replace("}", "")
