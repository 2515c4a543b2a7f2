"""OpenAPI 3.1 documents (native and LowCodeAPI) and the LowCodeAPI definition, generated from the registry.

Operation schemas come from Mistral's published spec (the contract we implement), so generated documents stay
faithful to it; the registry adds seed names, categories, scopes, status and the LowCodeAPI envelope.
"""

from __future__ import annotations

import copy
from typing import Any

from mistral_gateway import __version__
from mistral_gateway.protocol.chat import CompletionChunk
from mistral_gateway.registry import Operation, Param, Registry

__all__ = ["build_definition", "build_openapi"]

# Statuses every operation can answer (the endpoint's checks, body limits, and upstream forwarding, which any
# workspace may be configured for), in the dialect's error shape. 422 and 501 depend on the operation.
_ERROR_STATUSES = {
    "400": "Bad request: malformed or empty body, or a value the server refuses",
    "401": "Missing, invalid, expired or revoked token",
    "403": "The token lacks the operation's scope",
    "404": "Unknown route or resource (resources of other workspaces are not found either)",
    "413": "Body larger than the configured limit",
    "429": "Rate limited (see Retry-After)",
    "502": "The upstream this workspace forwards to broke off its answer",
    "503": ("The model is busy or restarting, or a server the gateway depends on is unavailable (the upstream, the "
            "database, the blob store, Redis for rate limits); see Retry-After"),
    "504": "The upstream this workspace forwards to timed out",
}
_VALIDATION = "Validation error: the body or query string does not match the operation's schema"
_NOT_IMPLEMENTED = "Operation not implemented yet in this build"


def build_openapi(registry: Registry, dialect: str) -> dict[str, Any]:
    if dialect not in ("native", "lowcode"):
        raise ValueError(f"unknown dialect {dialect!r}")
    lowcode = dialect == "lowcode"
    paths: dict[str, dict[str, Any]] = {}
    for op in registry:
        if op.twin and op.stream == "always":
            continue  # documented on its twin's operation (same method and path)
        doc = _operation_doc(registry, op, lowcode)
        path = op.lowcode_path if lowcode else op.path
        paths.setdefault(path, {})[op.method.lower()] = doc
    schemas = dict(registry.spec.schemas)
    schemas["Error"] = {
        "type": "object",
        "title": "Error",
        "properties": {
            "object": {"type": "string", "const": "error"},
            "message": {"type": "string"},
            "type": {"type": "string"},
            "param": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "code": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["object", "message", "type"],
    }
    schemas["LowCodeError"] = {
        "type": "object",
        "title": "LowCodeError",
        "properties": {"data": {"type": "object", "properties": {"error": {
            "type": "object",
            "properties": {"message": {"type": "string"}, "code": {"type": "string"},
                           "detail": {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}}},
            "required": ["message", "code"],
        }}, "required": ["error"]}},
        "required": ["data"],
    }
    if lowcode:
        security = {"ApiToken": {"type": "apiKey", "in": "query", "name": "api_token"},
                    "ApiTokenHeader": {"type": "apiKey", "in": "header", "name": "x-api-token"}}
        title = "mistral-gateway: Mistral AI via the LowCodeAPI dialect"
    else:
        security = {"ApiKey": {"type": "http", "scheme": "bearer"},
                    "XApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}
        title = "mistral-gateway: Mistral AI native dialect"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": __version__,
            "description": (
                "Generated from the operation registry; schemas from Mistral's published OpenAPI. "
                + ("JSON success bodies are wrapped as {\"data\": ...}; errors as {\"data\":{\"error\":{...}}}. "
                   "Old-format paths (path parameters as query parameters) are listed at /mistralai/definition."
                   if lowcode else "Bodies and errors as Mistral's API.")
            ),
        },
        "servers": [{"url": "/"}],  # paths are absolute (LowCodeAPI's carry their /mistralai prefix)
        "security": [{name: []} for name in security],
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items())), "securitySchemes": security},
    }


def _operation_doc(registry: Registry, op: Operation, lowcode: bool) -> dict[str, Any]:
    spec_op = copy.deepcopy(registry.spec.operation(op.operation_id))
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.name,
        "description": spec_op.get("description", ""),
        "tags": [op.category],
        "x-operation": op.id,
        "x-category": op.category,
        "x-scope": op.scope,
        "x-stream": op.stream,
        "x-status": "implemented" if op.implemented else "not-implemented",
    }
    if op.deprecated or spec_op.get("deprecated"):
        doc["deprecated"] = True
    if not op.seed:
        doc["x-seed"] = False  # served beyond the seed's 55 operations
    if op.method_aliases:
        doc["x-method-aliases"] = list(op.method_aliases)  # the same operation (the SDK 3.x sends PATCH)
    if spec_op.get("parameters"):
        doc["parameters"] = spec_op["parameters"]
    if "requestBody" in spec_op:
        doc["requestBody"] = spec_op["requestBody"]
    responses = spec_op.get("responses", {})
    if op.twin:
        twin = registry.get(op.twin)
        doc["x-twin"] = {"operation": twin.id, "summary": twin.name, "selected_by": "stream=true in the body"}
        twin_ok = registry.spec.operation(twin.operation_id).get("responses", {}).get("200", {})
        responses.setdefault("200", {}).setdefault("content", {}).update(copy.deepcopy(twin_ok.get("content", {})))
    ok = responses.get(str(op.status), {}).get("content", {})
    if op.stream != "never" and op.chunk is CompletionChunk and "text/event-stream" not in ok:
        # agents completions: the spec lists JSON only, but they stream like chat (the SDK's stream() reads them)
        ok["text/event-stream"] = {"schema": {"$ref": _REF + "CompletionEvent"}}
    for status, text in _error_statuses(op).items():
        ref = "HTTPValidationError" if status == "422" else "Error"
        responses.setdefault(status, {"description": text,
                                      "content": {"application/json": {"schema": {"$ref": _REF + ref}}}})
    error = _REF + ("LowCodeError" if lowcode else "Error")
    for response in responses.values():
        stream = response.get("content", {}).get("text/event-stream")
        if stream is not None:
            stream["schema"] = _sse_event(registry, stream["schema"], error)
    if lowcode:
        responses = {status: _envelope(status, body) for status, body in responses.items()}
    doc["responses"] = dict(sorted(responses.items()))
    return doc


_REF = "#/components/schemas/"


def _sse_event(registry: Registry, schema: dict[str, Any], error_ref: str) -> dict[str, Any]:
    """One server-sent event as it is on the wire: ``data`` is a string holding JSON (a chunk, or the dialect's
    error if the stream fails after it began) or, for streams of unnamed events (chat, FIM), the final ``[DONE]``.
    Streams whose events the spec names (an ``event`` line: transcription) end with their last event, no marker.
    Mistral's spec gives ``data`` as the parsed object, which no event matches as sent."""
    event = copy.deepcopy(registry.spec.resolve(schema))
    data = event.get("properties", {}).get("data")
    if data is None:
        return schema
    payload = {"anyOf": [data, {"$ref": error_ref}]}
    sent: dict[str, Any] = {"type": "string", "contentMediaType": "application/json", "contentSchema": payload}
    named = "event" in event["properties"]
    event["properties"]["data"] = sent if named else {"anyOf": [sent, {"const": "[DONE]"}]}
    return event


def _error_statuses(op: Operation) -> dict[str, str]:
    statuses = dict(_ERROR_STATUSES)
    if op.request is not None or op.query is not None:
        statuses["422"] = _VALIDATION  # pydantic validation of the body or query string
    if not op.implemented:
        statuses["501"] = _NOT_IMPLEMENTED
    return statuses


def _envelope(status: str, response: dict[str, Any]) -> dict[str, Any]:
    content = response.get("content", {}).get("application/json")
    if content is None:
        return response
    response = copy.deepcopy(response)
    body = response["content"]["application/json"]
    if status.startswith("2"):
        body["schema"] = {"type": "object", "properties": {"data": content.get("schema", {})}, "required": ["data"]}
        body.pop("examples", None)
    else:  # every error leaves in the LowCodeAPI shape, validation errors included
        body["schema"] = {"$ref": _REF + "LowCodeError"}
    return response


def build_definition(registry: Registry) -> dict[str, Any]:
    """The LowCodeAPI-style definition: every operation in the old format, with its parameters and types."""
    return {
        "provider": "mistralai",
        "name": "Mistral AI",
        "base_path": "/mistralai",
        "auth": {"type": "TOKEN", "query_param": "api_token", "header": "x-api-token"},
        "url_formats": {
            "new": "path parameters stay in the path: /mistralai/v1/files/{file_id}?api_token=...",
            "old": "path parameters become query parameters: /mistralai/v1/files/file_id?file_id=...&api_token=...",
        },
        "response_envelope": {"success": {"data": "<Mistral response body>"},
                              "error": {"data": {"error": {"message": "...", "code": "..."}}}},
        "operations": [_definition_entry(op) for op in registry],
    }


def _definition_entry(op: Operation) -> dict[str, Any]:
    return {
        "id": op.id,
        "name": op.name,
        "category": op.category,
        "method": op.method,
        "path": op.old_format_path,
        "new_format_path": op.lowcode_path,
        "path_params": [_param(p) | {"old_format": "query"} for p in op.path_params],
        "query_params": [_param(p) for p in op.query_params],
        "body": None if op.body == "none" else {
            "content_type": "multipart/form-data" if op.body == "multipart" else "application/json",
            "params": [_param(p) for p in op.body_params],
        },
        "stream": op.stream,
        "scope": op.scope,
        "status": "implemented" if op.implemented else "not implemented",
        "deprecated": op.deprecated,
        **({"method_aliases": list(op.method_aliases)} if op.method_aliases else {}),
        **({} if op.seed else {"seed": False}),
    }


def _param(p: Param) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": p.name, "type": p.type, "required": p.required}
    if p.items:
        entry["items"] = p.items
    if p.default is not None:
        entry["default"] = p.default
    if p.description:
        entry["description"] = p.description
    if p.limits:
        entry["limits"] = p.limits
    return entry
