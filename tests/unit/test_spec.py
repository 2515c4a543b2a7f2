"""registry.spec: reading Mistral's spec subset and deriving short parameter types from JSON schemas."""

from __future__ import annotations

from typing import Any

import pytest

from mistral_gateway.registry import Registry
from mistral_gateway.registry.spec import MistralSpec, load_spec

SCHEMAS: dict[str, Any] = {
    "Name": {"type": "string", "description": "a name", "default": "n"},
    "Alias": {"$ref": "#/components/schemas/Name"},
    "Role": {"enum": ["user", "assistant"]},
    "Upload": {"title": "File", "type": "object"},
    "Base": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
    "Derived": {"allOf": [{"$ref": "#/components/schemas/Base"}],
                "properties": {"b": {"type": "boolean"}}, "required": ["b"]},
}

OPERATIONS: dict[str, Any] = {
    "op": {"method": "post", "path": "/v1/things/{thing_id}", "operation": {
        "parameters": [
            {"name": "thing_id", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 10}, "description": "max"},
            {"name": "tags", "in": "query", "schema": {"anyOf": [{"type": "array", "items": {"type": "string"}},
                                                                 {"type": "null"}]}},
            {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
        ],
        "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Derived"}}}},
    }},
    "upload": {"method": "post", "path": "/v1/up", "operation": {
        "requestBody": {"content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary"}, "purpose": {"type": "string"}}}}}},
    }},
    "bare": {"method": "get", "path": "/v1/bare", "operation": {}},
}


@pytest.fixture
def spec() -> MistralSpec:
    return MistralSpec(operations=OPERATIONS, schemas=SCHEMAS)


@pytest.mark.parametrize(("schema", "expected"), [
    ({"type": "string"}, ("string", None)),
    ({"type": "integer"}, ("integer", None)),
    ({"$ref": "#/components/schemas/Alias"}, ("string", None)),
    ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, ("integer", None)),
    ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, ("integer|string", None)),
    ({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}, ("array|string", None)),
    ({"type": "array", "items": {"type": "number"}}, ("array", "number")),
    ({"type": "array", "items": {"$ref": "#/components/schemas/Base"}}, ("array", "object")),
    ({"type": "array"}, ("array", "object")),
    ({"type": "string", "format": "binary"}, ("file", None)),
    ({"$ref": "#/components/schemas/Upload"}, ("file", None)),
    ({"type": "object", "properties": {"content": {}, "fileName": {}}}, ("file", None)),
    ({"$ref": "#/components/schemas/Role"}, ("string", None)),
    ({"const": "x"}, ("string", None)),
    ({"allOf": [{"$ref": "#/components/schemas/Name"}]}, ("string", None)),
    ({}, ("object", None)),
])
def test_type_of(spec: MistralSpec, schema: dict[str, Any], expected: tuple[str, str | None]) -> None:
    assert spec.type_of(schema) == expected


def test_resolve_follows_ref_chains(spec: MistralSpec) -> None:
    assert spec.resolve({"$ref": "#/components/schemas/Alias"}) == SCHEMAS["Name"]


def test_properties_merge_all_of(spec: MistralSpec) -> None:
    props, required = spec.properties({"$ref": "#/components/schemas/Derived"})
    assert set(props) == {"a", "b"}
    assert required == {"a", "b"}


def test_params(spec: MistralSpec) -> None:
    path, query, body = spec.params("op")
    assert [(p.name, p.location, p.type, p.required) for p in path] == [("thing_id", "path", "string", True)]
    assert [(p.name, p.type, p.items, p.default, p.description) for p in query] == [
        ("limit", "integer", None, 10, "max"), ("tags", "array", "string", None, "")]
    assert {(p.name, p.type, p.required) for p in body} == {("a", "integer", True), ("b", "boolean", True)}
    assert all(p.location == "body" for p in body)


def test_params_multipart_and_empty(spec: MistralSpec) -> None:
    _, _, body = spec.params("upload")
    assert {(p.name, p.type, p.required) for p in body} == {("file", "file", True), ("purpose", "string", False)}
    assert spec.params("bare") == ((), (), ())


def test_unknown_operation(spec: MistralSpec) -> None:
    with pytest.raises(KeyError):
        spec.operation("nope")


def test_bundled_spec_loads() -> None:
    spec = load_spec()
    assert len(spec.operations) == 59  # the seed's 55 and the registry's extras
    assert {op.operation_id for op in Registry.load()} == set(spec.operations)
    assert "UploadFileOut" in spec.schemas
    entry = spec.operations["files_api_routes_upload_file"]
    assert (entry["method"].lower(), entry["path"]) == ("post", "/v1/files")
