"""Reads the committed Mistral spec subset and derives each operation's parameters from it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from mistral_gateway.registry.constraints import numeric_keywords
from mistral_gateway.registry.operation import Param

__all__ = ["MistralSpec", "load_spec"]

_LIMIT_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems",
               "maxItems", "enum")


@dataclass(frozen=True)
class MistralSpec:
    operations: dict[str, dict[str, Any]]  # operationId -> {"method", "path", "operation"}
    schemas: dict[str, Any]

    def operation(self, operation_id: str) -> dict[str, Any]:
        return self.operations[operation_id]["operation"]

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.schemas[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def type_of(self, schema: dict[str, Any]) -> tuple[str, str | None]:
        """A short type name (and the item type for arrays) for the definition document."""
        schema = self.resolve(schema)
        options = schema.get("anyOf") or schema.get("oneOf")
        if options:
            non_null = [s for s in options if self.resolve(s).get("type") != "null"]
            if len(non_null) == 1:
                return self.type_of(non_null[0])
            kinds = sorted({self.type_of(s)[0] for s in non_null})
            return "|".join(kinds), None
        if "allOf" in schema and len(schema["allOf"]) == 1:
            return self.type_of(schema["allOf"][0])
        kind = schema.get("type")
        if kind == "array":
            return "array", self.type_of(schema.get("items", {}))[0]
        if kind == "string" and schema.get("format") == "binary":
            return "file", None
        if schema.get("title") == "File" or ("properties" in schema and "content" in schema["properties"]
                                             and "fileName" in schema["properties"]):
            return "file", None
        if isinstance(kind, str):
            return kind, None
        if "enum" in schema or "const" in schema:
            return "string", None
        return "object", None

    def limits(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Value limits (ranges, lengths, counts, enum) of a parameter, for the definition document."""
        schema = self.resolve(schema)
        options = [self.resolve(s) for s in (schema.get("anyOf") or schema.get("oneOf") or [])]
        non_null = [s for s in options if s.get("type") != "null"]
        out = {k: v for s in [*non_null, schema] for k, v in s.items() if k in _LIMIT_KEYS}
        if "items" in schema and isinstance(schema["items"], dict):
            inner = self.limits(schema["items"])
            if inner:
                out["items"] = inner
        return out

    def properties(self, schema: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
        """Top-level properties and required names of an object schema, merging ``allOf`` parts."""
        schema = self.resolve(schema)
        props: dict[str, Any] = {}
        required: set[str] = set(schema.get("required", []))
        for part in schema.get("allOf", []):
            more, req = self.properties(part)
            props.update(more)
            required |= req
        props.update(schema.get("properties", {}))
        return props, required

    def params(self, operation_id: str) -> tuple[tuple[Param, ...], tuple[Param, ...], tuple[Param, ...]]:
        op = self.operation(operation_id)
        path: list[Param] = []
        query: list[Param] = []
        for raw in op.get("parameters", []):
            schema = raw.get("schema", {})
            kind, items = self.type_of(schema)
            param = Param(
                name=raw["name"],
                location=raw["in"],
                type=kind,
                required=bool(raw.get("required", False)),
                description=raw.get("description") or self.resolve(schema).get("description", ""),
                default=self.resolve(schema).get("default", schema.get("default")),
                items=items,
                limits=self.limits(schema),
            )
            if raw["in"] == "path":
                path.append(param)
            elif raw["in"] == "query":
                query.append(param)
        body: list[Param] = []
        content = op.get("requestBody", {}).get("content", {})
        for media in ("application/json", "multipart/form-data"):
            if media in content:
                props, required = self.properties(content[media]["schema"])
                for name, prop in props.items():
                    kind, items = self.type_of(prop)
                    body.append(
                        Param(
                            name=name,
                            location="body",
                            type=kind,
                            required=name in required,
                            description=self.resolve(prop).get("description", prop.get("description", "")) or "",
                            default=prop.get("default"),
                            items=items,
                            limits=self.limits(prop),
                        )
                    )
                break
        return tuple(path), tuple(query), tuple(body)


def load_spec() -> MistralSpec:
    raw = json.loads(resources.files("mistral_gateway.registry").joinpath("mistral_spec.json").read_text("utf-8"))
    raw = numeric_keywords(raw)  # the published spec writes some limits as strings, which JSON Schema forbids
    return MistralSpec(operations=raw["operations"], schemas=raw["schemas"])
