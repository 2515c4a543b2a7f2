"""registry.constraints: the documents carry the limits the server enforces, derived from its request models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from mistral_gateway.config import Settings
from mistral_gateway.http.openapi import build_definition, build_openapi
from mistral_gateway.protocol.chat import ChatCompletionRequest
from mistral_gateway.protocol.files import FILE_PURPOSES, ListFilesQuery
from mistral_gateway.registry import Registry
from mistral_gateway.registry.constraints import numeric_keywords

LIMITS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems",
          "maxItems")


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load()


@pytest.fixture(scope="module", params=["native", "lowcode"])
def doc(request: pytest.FixtureRequest, registry: Registry) -> dict[str, Any]:
    return build_openapi(registry, request.param)


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def component(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def non_null(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in schema.get("anyOf") or schema.get("oneOf") or [schema] if b.get("type") != "null"]


def query_param(doc: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    prefix = "/mistralai" if "/mistralai/v1/files" in doc["paths"] else ""
    params = doc["paths"][prefix + path]["get"]["parameters"]
    return next(p for p in params if p["name"] == name)


def test_numeric_limits_are_numbers(doc: dict[str, Any]) -> None:
    lr = doc["components"]["schemas"]["CompletionTrainingParameters"]["properties"]["learning_rate"]
    assert lr["minimum"] == 1e-08  # published as the string "1e-08"
    for node in walk(doc):
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
            if key in node and isinstance(node[key], dict | list):
                continue  # a property that happens to be called "minimum"
            assert not isinstance(node.get(key), str), node


def test_numeric_keywords_converts_strings_only() -> None:
    assert numeric_keywords({"a": [{"minimum": "1e-08", "maximum": "2", "title": "3"}]}) == {
        "a": [{"minimum": 1e-08, "maximum": 2, "title": "3"}]}


def test_every_component_schema_is_valid_json_schema(doc: dict[str, Any]) -> None:
    for name, schema in doc["components"]["schemas"].items():
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as exc:
            raise AssertionError(f"component {name} is not valid JSON Schema: {exc}") from exc


def test_body_limits_match_the_request_models(registry: Registry, doc: dict[str, Any]) -> None:
    """Every range, length and count a request model declares on a top-level field is in the document."""
    checked = 0
    for op in registry:
        if op.request is None:
            continue
        path = ("/mistralai" if doc["info"]["title"].endswith("LowCodeAPI dialect") else "") + op.path
        content = doc["paths"][path][op.method.lower()]["requestBody"]["content"]
        body = (content.get("application/json") or content["multipart/form-data"])["schema"]
        schema = component(doc, body)
        props = {k: v for part in [schema, *(component(doc, p) for p in schema.get("allOf", ()))]
                 for k, v in part.get("properties", {}).items()}  # conversation bodies: allOf a base + stream
        for name, field in op.request.model_json_schema()["properties"].items():
            if name not in props:
                continue  # a field the spec lacks (e.g. OpenAI's `seed`): accepted, not documented
            ours = {k: v for b in non_null(field) for k, v in b.items() if k in LIMITS}
            documented = {k: v for b in non_null(props[name]) for k, v in b.items() if k in LIMITS}
            assert ours.items() <= documented.items(), (op.id, name, ours, documented)
            checked += len(ours)
    assert checked >= 10


def test_limits_the_issue_named(registry: Registry, doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert query_param(doc, "/v1/files", "page_size")["schema"]["minimum"] == 1
    purpose = query_param(doc, "/v1/files", "purpose")["schema"]["anyOf"][0]
    assert component(doc, purpose)["enum"] == list(FILE_PURPOSES)  # requests and responses alike
    assert schemas["FilePurpose"]["enum"] == list(FILE_PURPOSES)
    expiry = query_param(doc, "/v1/files/{file_id}/url", "expiry")["schema"]
    assert (expiry["minimum"], expiry["maximum"]) == (1, Settings().signed_url_max_hours) == (1, 168)
    assert schemas["ChatCompletionRequest"]["properties"]["messages"]["minItems"] == 1
    emb = schemas["EmbeddingRequest"]
    assert emb["properties"]["input"]["anyOf"] == [
        {"type": "string", "minLength": 1}, {"type": "array", "items": {"type": "string", "minLength": 1},
                                             "minItems": 1}]
    assert "additionalProperties" not in emb  # unknown fields are ignored, so the document does not forbid them
    assert "384" in emb["properties"]["output_dimension"]["description"]
    prefix = "/mistralai" if doc["info"]["title"].endswith("LowCodeAPI dialect") else ""
    upload = doc["paths"][prefix + "/v1/files"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert upload["properties"]["purpose"]["enum"] == list(FILE_PURPOSES)
    assert ".jsonl" in upload["properties"]["purpose"]["description"]
    assert upload["properties"]["expiry"]["minimum"] == 1


def test_validation_errors_documented_where_models_validate(registry: Registry, doc: dict[str, Any]) -> None:
    lowcode = doc["info"]["title"].endswith("LowCodeAPI dialect")
    for op in registry:
        if op.twin and op.stream == "always":
            continue
        path = ("/mistralai" if lowcode else "") + op.path
        responses = doc["paths"][path][op.method.lower()]["responses"]
        if op.request is not None or op.query is not None:
            schema = responses["422"]["content"]["application/json"]["schema"]
            name = "LowCodeError" if lowcode else "HTTPValidationError"
            assert schema == {"$ref": f"#/components/schemas/{name}"}, op.id
    assert "422" in doc["paths"][("/mistralai" if lowcode else "") + "/v1/files/{file_id}/url"]["get"]["responses"]


def test_definition_lists_limits(registry: Registry) -> None:
    entries = {e["id"]: e for e in build_definition(registry)["operations"]}
    page_size = next(p for p in entries["list_files"]["query_params"] if p["name"] == "page_size")
    assert page_size["limits"] == {"minimum": 1, "maximum": 1000}
    messages = next(p for p in entries["create_chat_completions"]["body"]["params"] if p["name"] == "messages")
    assert messages["limits"]["minItems"] == 1


@pytest.mark.parametrize("value", [0, 1, "true", "false"])
def test_json_booleans_are_strict(value: Any) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    for field in ("safe_prompt", "stream", "parallel_tool_calls"):
        with pytest.raises(ValidationError):
            ChatCompletionRequest.model_validate(body | {field: value})
    assert ChatCompletionRequest.model_validate(body | {"safe_prompt": True}).safe_prompt is True


def test_query_booleans_stay_lax_and_purpose_is_checked() -> None:
    assert ListFilesQuery.model_validate({"include_total": "false"}).include_total is False
    with pytest.raises(ValidationError):
        ListFilesQuery.model_validate({"purpose": "true"})
    assert ListFilesQuery.model_validate({"purpose": "batch"}).purpose == "batch"


def test_response_and_message_schemas_match_what_is_sent(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    embedding = Draft202012Validator(schemas["EmbeddingResponseData"]["properties"]["embedding"])
    for value in ([0.5, -0.25], [3, -7], "AAAAPw=="):  # float, an integer dtype, base64
        assert embedding.is_valid(value), value
    assert not embedding.is_valid({"x": 1})
    for name in ("SystemMessage", "UserMessage", "AssistantMessage", "ToolMessage"):
        assert "role" in schemas[name]["required"], name  # the discriminator the server needs
