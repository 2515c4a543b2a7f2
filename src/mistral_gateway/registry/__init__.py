"""The operation registry: one declarative table of the 55 operations, enriched from Mistral's spec.

It drives routing for both dialects, old-format resolution, the OpenAPI and definition documents, the API test
matrix and the client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from mistral_gateway.registry.constraints import tighten_operations
from mistral_gateway.registry.operation import BodyKind, Operation, Param, StreamMode
from mistral_gateway.registry.spec import MistralSpec, load_spec
from mistral_gateway.registry.table import CATEGORY_SCOPES, OPERATIONS

__all__ = [
    "CATEGORY_SCOPES",
    "BodyKind",
    "MistralSpec",
    "Operation",
    "Param",
    "Registry",
    "StreamMode",
]


class Registry:
    """Immutable after construction; build one per app (``Registry.load()``) and pass it around."""

    def __init__(self, operations: tuple[Operation, ...], spec: MistralSpec) -> None:
        # Documents describe what the server enforces: the spec tightened by the request and query models.
        spec = MistralSpec(*tighten_operations(spec.operations, spec.schemas, operations))
        enriched = []
        for op in operations:
            path, query, body = spec.params(op.operation_id)
            enriched.append(dataclasses.replace(op, path_params=path, query_params=query, body_params=body))
        self.operations: tuple[Operation, ...] = tuple(enriched)
        self.spec = spec
        self._by_id = {op.id: op for op in self.operations}
        if len(self._by_id) != len(self.operations):
            raise ValueError("duplicate operation id in registry")

    @classmethod
    def load(cls) -> Registry:
        return cls(OPERATIONS, load_spec())

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def __len__(self) -> int:
        return len(self.operations)

    def get(self, op_id: str) -> Operation:
        return self._by_id[op_id]

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(CATEGORY_SCOPES.values()))
