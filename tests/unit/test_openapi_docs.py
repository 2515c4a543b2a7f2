"""http.openapi: the generated OpenAPI 3.1 documents (native and LowCodeAPI) and the LowCodeAPI definition."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from mistral_gateway.http.openapi import build_definition, build_openapi
from mistral_gateway.registry import Registry

HTTP_METHODS = {"get", "post", "put", "patch", "delete", "head", "options", "trace"}
_PARAM = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load()


@pytest.fixture(scope="module")
def native(registry: Registry) -> dict[str, Any]:
    return build_openapi(registry, "native")


@pytest.fixture(scope="module")
def lowcode(registry: Registry) -> dict[str, Any]:
    return build_openapi(registry, "lowcode")


@pytest.fixture(scope="module")
def definition(registry: Registry) -> dict[str, Any]:
    return build_definition(registry)


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield path, method, op


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve_pointer(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"external or malformed $ref {ref!r}"
    node: Any = doc
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and token in node, f"unresolvable $ref {ref!r}"
        node = node[token]
    return node


def json_success(op: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for status, response in op["responses"].items():
        media = response.get("content", {}).get("application/json")
        if status.startswith("2") and media is not None:
            out.append((status, media["schema"]))
    return out


@pytest.mark.parametrize("dialect", ["native", "lowcode"])
def test_document_shape(registry: Registry, dialect: str) -> None:
    doc = build_openapi(registry, dialect)
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"]
    assert doc["info"]["version"]
    assert isinstance(doc["paths"], dict)
    assert isinstance(doc["components"]["schemas"], dict)
    orjson.dumps(doc)  # serialisable as served
    assert build_openapi(registry, dialect) == doc  # deterministic


def test_unknown_dialect(registry: Registry) -> None:
    with pytest.raises(ValueError, match="dialect"):
        build_openapi(registry, "graphql")


@pytest.mark.parametrize("dialect", ["native", "lowcode"])
def test_every_ref_resolves(registry: Registry, dialect: str) -> None:
    doc = build_openapi(registry, dialect)
    all_refs = set(refs(doc))
    assert len(all_refs) > 50
    for ref in all_refs:
        target = resolve_pointer(doc, ref)
        assert isinstance(target, dict), ref


@pytest.mark.parametrize("dialect", ["native", "lowcode"])
def test_55_operations_counting_the_twin(registry: Registry, dialect: str) -> None:
    doc = build_openapi(registry, dialect)
    ops = list(operations(doc))
    assert len(ops) == 54 + len(registry.extras)
    documented = [op["x-operation"] for _, _, op in ops]
    twins = [op["x-twin"]["operation"] for _, _, op in ops if "x-twin" in op]
    assert twins == ["create_streaming_transcription"]
    assert sorted(documented + twins) == sorted(o.id for o in registry)
    assert len({op["operationId"] for _, _, op in ops}) == 54 + len(registry.extras)


@pytest.mark.parametrize("dialect", ["native", "lowcode"])
def test_operations_match_the_registry(registry: Registry, dialect: str) -> None:
    doc = build_openapi(registry, dialect)
    prefix = "/mistralai" if dialect == "lowcode" else ""
    for path, method, op in operations(doc):
        reg = registry.get(op["x-operation"])
        assert path == prefix + reg.path
        assert method == reg.method.lower()
        assert op["operationId"] == reg.operation_id
        assert op["summary"] == reg.name
        assert op["tags"] == [reg.category]
        assert op["x-scope"] == reg.scope
        assert op["x-stream"] == reg.stream
        assert op["x-status"] == ("implemented" if reg.implemented else "not-implemented")
        if reg.deprecated:
            assert op.get("deprecated") is True
        assert op["responses"], reg.id
        for status, response in op["responses"].items():
            assert re.fullmatch(r"[1-5]\d\d", status), (reg.id, status)
            assert "description" in response, (reg.id, status)


@pytest.mark.parametrize("dialect", ["native", "lowcode"])
def test_path_params_are_declared(registry: Registry, dialect: str) -> None:
    doc = build_openapi(registry, dialect)
    for path, _, op in operations(doc):
        declared = {p["name"] for p in op.get("parameters", []) if p.get("in") == "path"}
        assert declared == set(_PARAM.findall(path)), path
        for p in op.get("parameters", []):
            if p.get("in") == "path":
                assert p.get("required") is True


def test_twin_documented_on_its_sibling(native: dict[str, Any]) -> None:
    op = native["paths"]["/v1/audio/transcriptions"]["post"]
    assert op["x-operation"] == "create_transcription"
    assert op["x-twin"]["operation"] == "create_streaming_transcription"
    assert op["x-twin"]["summary"] == "Create Streaming Transcription"
    assert set(op["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}


def test_security_schemes_native(native: dict[str, Any]) -> None:
    schemes = native["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {"type": "http", "scheme": "bearer"}
    assert schemes["XApiKey"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}
    assert all(name in schemes for req in native["security"] for name in req)
    assert not any(s.get("in") == "query" for s in schemes.values())
    assert native["servers"] == [{"url": "/"}]


def test_security_schemes_lowcode(lowcode: dict[str, Any]) -> None:
    schemes = lowcode["components"]["securitySchemes"]
    assert schemes["ApiToken"] == {"type": "apiKey", "in": "query", "name": "api_token"}
    assert schemes["ApiTokenHeader"] == {"type": "apiKey", "in": "header", "name": "x-api-token"}
    assert all(name in schemes for req in lowcode["security"] for name in req)
    assert not any(s.get("scheme") == "bearer" for s in schemes.values())
    # Paths carry their /mistralai prefix, so the server is the root (a /mistralai server would double it).
    assert lowcode["servers"] == [{"url": "/"}]
    assert all(path.startswith("/mistralai/v1/") for path in lowcode["paths"])


def test_lowcode_success_bodies_are_wrapped(native: dict[str, Any], lowcode: dict[str, Any]) -> None:
    native_ops = {op["x-operation"]: op for _, _, op in operations(native)}
    wrapped = 0
    for _, _, op in operations(lowcode):
        plain = dict(json_success(native_ops[op["x-operation"]]))
        for status, schema in json_success(op):
            assert schema["type"] == "object"
            assert schema["required"] == ["data"]
            assert set(schema["properties"]) == {"data"}
            assert schema["properties"]["data"] == plain[status]
            wrapped += 1
    assert wrapped >= 50


def test_native_success_bodies_are_not_wrapped(native: dict[str, Any]) -> None:
    op = native["paths"]["/v1/files/{file_id}"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RetrieveFileOut"}


def test_lowcode_streams_and_downloads_pass_through(native: dict[str, Any], lowcode: dict[str, Any]) -> None:
    download = lowcode["paths"]["/mistralai/v1/files/{file_id}/content"]["get"]["responses"]["200"]["content"]
    assert download == native["paths"]["/v1/files/{file_id}/content"]["get"]["responses"]["200"]["content"]
    assert "application/json" not in download
    chat = lowcode["paths"]["/mistralai/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    native_chat = native["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    # Same events; a stream that fails after it began ends with an error event in the dialect's shape.
    as_native = orjson.loads(orjson.dumps(chat["text/event-stream"]).replace(b"LowCodeError", b"Error"))
    assert as_native == native_chat["text/event-stream"]
    data = native_chat["text/event-stream"]["schema"]["properties"]["data"]["anyOf"]
    assert data[0]["contentMediaType"] == "application/json" and data[1] == {"const": "[DONE]"}


def test_error_shapes_per_dialect(native: dict[str, Any], lowcode: dict[str, Any]) -> None:
    for doc, ref in ((native, "#/components/schemas/Error"), (lowcode, "#/components/schemas/LowCodeError")):
        for _, _, op in operations(doc):
            statuses = ["400", "401", "403", "404", "413", "429", "502", "503", "504"]
            statuses += [] if op["x-status"] == "implemented" else ["501"]
            for status in statuses:
                assert op["responses"][status]["content"]["application/json"]["schema"] == {"$ref": ref}
            if op["x-status"] == "implemented":
                assert "501" not in op["responses"]
    for _, _, op in operations(lowcode):
        if "422" in op["responses"]:
            schema = op["responses"]["422"]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/LowCodeError"}
    lowcode_error = lowcode["components"]["schemas"]["LowCodeError"]
    assert lowcode_error["required"] == ["data"]
    assert lowcode_error["properties"]["data"]["properties"]["error"]["required"] == ["message", "code"]
    assert native["components"]["schemas"]["Error"]["required"] == ["object", "message", "type"]


def test_building_does_not_mutate_the_spec(registry: Registry) -> None:
    before = copy.deepcopy((registry.spec.operations, registry.spec.schemas))
    build_openapi(registry, "lowcode")
    build_openapi(registry, "native")
    assert (registry.spec.operations, registry.spec.schemas) == before
    assert "Error" not in registry.spec.schemas


# -- definition ----------------------------------------------------------------------------------------


def test_definition_header(definition: dict[str, Any]) -> None:
    assert definition["provider"] == "mistralai"
    assert definition["base_path"] == "/mistralai"
    assert definition["auth"]["query_param"] == "api_token"
    orjson.dumps(definition)


def test_definition_has_55_entries_in_registry_order(registry: Registry, definition: dict[str, Any]) -> None:
    entries = definition["operations"]
    assert len(entries) == len(registry) == 55 + len(registry.extras)
    assert [e["id"] for e in entries] == [op.id for op in registry]
    assert [(e["name"], e["method"], e["category"]) for e in entries] == [
        (op.name, op.method, op.category) for op in registry]


def test_definition_paths_are_old_format(registry: Registry, definition: dict[str, Any]) -> None:
    by_id = {e["id"]: e for e in definition["operations"]}
    assert by_id["download_file"]["path"] == "/mistralai/v1/files/file_id/content"
    assert by_id["download_file"]["new_format_path"] == "/mistralai/v1/files/{file_id}/content"
    assert by_id["retrieve_file"]["path"] == "/mistralai/v1/files/file_id"
    assert by_id["get_library_document"]["path"] == "/mistralai/v1/libraries/library_id/documents/document_id"
    assert by_id["list_files"]["path"] == by_id["list_files"]["new_format_path"] == "/mistralai/v1/files"
    for entry in definition["operations"]:
        assert "{" not in entry["path"] and "}" not in entry["path"]
        assert entry["path"].startswith("/mistralai/v1/")
        for p in entry["path_params"]:
            assert p["old_format"] == "query"
            assert f"/{p['name']}" in entry["path"]
            assert "{" + p["name"] + "}" in entry["new_format_path"]


def test_definition_params_are_typed(definition: dict[str, Any]) -> None:
    by_id = {e["id"]: e for e in definition["operations"]}
    allowed = {"string", "integer", "number", "boolean", "array", "object", "file", "null"}
    for entry in definition["operations"]:
        params = entry["path_params"] + entry["query_params"] + (entry["body"]["params"] if entry["body"] else [])
        for p in params:
            assert set(p["type"].split("|")) <= allowed, (entry["id"], p)
            assert isinstance(p["required"], bool)
            if "items" in p:
                assert p["type"] == "array"
                assert set(p["items"].split("|")) <= allowed, (entry["id"], p)
    signed = by_id["get_signed_url"]
    assert signed["path_params"] == [{"name": "file_id", "type": "string", "required": True, "old_format": "query"}]
    expiry = {p["name"]: p for p in signed["query_params"]}["expiry"]
    assert (expiry["type"], expiry["required"], expiry["default"]) == ("integer", False, 24)
    upload = by_id["upload_file"]
    assert upload["body"]["content_type"] == "multipart/form-data"
    body = {p["name"]: p for p in upload["body"]["params"]}
    assert body["file"]["type"] == "file"
    assert body["file"]["required"] is True
    chat = by_id["create_chat_completions"]
    assert chat["body"]["content_type"] == "application/json"
    chat_body = {p["name"]: p for p in chat["body"]["params"]}
    assert chat_body["messages"]["type"] == "array"
    assert chat_body["messages"]["items"] == "object"
    assert chat_body["model"]["required"] is True
    assert chat["stream"] == "optional"
    jobs = {p["name"]: p["type"] for p in by_id["list_fine_tuning_jobs"]["query_params"]}
    assert jobs["page"] == "integer"
    assert jobs["created_by_me"] == "boolean"
    assert by_id["list_files"]["body"] is None


def test_definition_status_and_scope(registry: Registry, definition: dict[str, Any]) -> None:
    for entry, op in zip(definition["operations"], registry, strict=True):
        assert entry["scope"] == op.scope
        assert entry["status"] == ("implemented" if op.implemented else "not implemented")
        assert entry["deprecated"] is op.deprecated


@pytest.mark.parametrize("dialect", ["native", "lowcode"])
def test_extras_and_method_aliases_are_marked(registry: Registry, dialect: str) -> None:
    doc = build_openapi(registry, dialect)
    marked = {op["x-operation"]: op for _, _, op in operations(doc) if op.get("x-seed") is False}
    assert set(marked) == {op.id for op in registry.extras}
    aliased = {op["x-operation"]: op["x-method-aliases"] for _, _, op in operations(doc) if "x-method-aliases" in op}
    assert aliased == {"update_library": ["PATCH"], "update_library_document": ["PATCH"]}
    entries = {e["id"]: e for e in build_definition(registry)["operations"]}
    assert {i for i, e in entries.items() if e.get("seed") is False} == set(marked)
    assert entries["update_library"]["method_aliases"] == ["PATCH"]
