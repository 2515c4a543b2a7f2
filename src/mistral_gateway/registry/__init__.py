"""The operation registry: one declarative table of the 55 seed operations (and a few extras from Mistral's spec),
enriched from Mistral's spec.

It drives routing for both dialects, old-format resolution, the OpenAPI and definition documents, the API test
matrix and the client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from mistral_gateway.registry.constraints import tighten_operations
from mistral_gateway.registry.naming import client_name
from mistral_gateway.registry.operation import (
    PATH_PARAM,
    BodyKind,
    Operation,
    Param,
    ResponseKind,
    StreamMode,
    UpstreamKind,
    path_param_names,
)
from mistral_gateway.registry.spec import MistralSpec, load_spec
from mistral_gateway.registry.table import CATEGORY_SCOPES, OPERATIONS

__all__ = [
    "CATEGORY_SCOPES",
    "PATH_PARAM",
    "BodyKind",
    "MistralSpec",
    "Operation",
    "Param",
    "Registry",
    "ResponseKind",
    "StreamMode",
    "UpstreamKind",
    "path_param_names",
]


class Registry:
    """Immutable after construction; build one per app (``Registry.load()``) and pass it around."""

    def __init__(self, operations: tuple[Operation, ...], spec: MistralSpec) -> None:
        # Documents describe what the server enforces: the spec tightened by the request and query models.
        spec = MistralSpec(*tighten_operations(spec.operations, spec.schemas, operations))
        enriched = []
        for op in operations:
            path, query, body = spec.params(op.operation_id)
            enriched.append(dataclasses.replace(op, path_params=path, query_params=query, body_params=body,
                                                client=client_name(op)))
        self.operations: tuple[Operation, ...] = tuple(enriched)
        self.spec = spec
        self._by_id = {op.id: op for op in self.operations}
        if len(self._by_id) != len(self.operations):
            raise ValueError("duplicate operation id in registry")
        self._by_path: dict[tuple[str, str], Operation] = {}
        for op in self.operations:  # twins share a route: the non-streaming one answers for it
            if op.stream != "always" or (op.method, op.path) not in self._by_path:
                self._by_path[(op.method, op.path)] = op

    @classmethod
    def load(cls) -> Registry:
        return cls(OPERATIONS, load_spec())

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def __len__(self) -> int:
        return len(self.operations)

    def get(self, op_id: str) -> Operation:
        return self._by_id[op_id]

    def by_path(self, method: str, path: str) -> Operation | None:
        """The operation at a native method and path template (``"POST", "/v1/chat/completions"``)."""
        return self._by_path.get((method.upper(), path))

    @property
    def seed(self) -> tuple[Operation, ...]:
        """The seed's 55 operations, in the seed's order (the extras follow them in ``operations``)."""
        return tuple(op for op in self.operations if op.seed)

    @property
    def extras(self) -> tuple[Operation, ...]:
        return tuple(op for op in self.operations if not op.seed)

    @property
    def batchable(self) -> tuple[Operation, ...]:
        """Operations a batch job may run (their ``path`` is the job's ``endpoint``)."""
        return tuple(op for op in self.operations if op.batchable)

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The client's namespaces, in registry order."""
        return tuple(dict.fromkeys(op.client.split(".")[0] for op in self.operations if op.client))

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(CATEGORY_SCOPES.values()))
