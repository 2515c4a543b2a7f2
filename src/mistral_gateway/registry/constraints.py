"""Tighten Mistral's published schemas to what this server enforces, derived from the pydantic models it validates
with (``Operation.request`` for JSON bodies, ``Operation.query`` for query strings).

Mistral's spec stays the base (names, descriptions, component references); from each model's JSON schema we copy the
value limits (ranges, lengths, item counts, enums), the required fields, nullability (a ``null`` branch the model
refuses is dropped) and whether unknown fields are allowed. Only schemas inline in the operation or in a component
used solely as a request body are tightened this way; shared components stay Mistral's except where the server
answers more than they allow (``COMPONENT_ENUMS``, ``RESPONSE_FIELDS``) and for discriminators, whose property
OpenAPI (and the server) require.

What no model expresses (limits that live in a service or in the configuration) is added in ``SERVICE_LIMITS``
below, from the constant the service or setting uses where there is one.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from mistral_gateway.protocol.agent_common import CompletionArgs
from mistral_gateway.protocol.agents import agent_limits
from mistral_gateway.protocol.audio import transcription_limits
from mistral_gateway.protocol.classifiers import classifier_limits
from mistral_gateway.protocol.common import SIGNED_URL_MAX_HOURS
from mistral_gateway.protocol.conversations import conversation_limits
from mistral_gateway.protocol.embeddings import EmbeddingData
from mistral_gateway.protocol.files import FILE_PURPOSES, MAX_FILE_EXPIRY_HOURS
from mistral_gateway.protocol.fine_tuning import fine_tuning_limits
from mistral_gateway.protocol.ocr import ocr_limits
from mistral_gateway.registry.operation import Operation

__all__ = ["COMPONENT_ENUMS", "RESPONSE_FIELDS", "SERVICE_LIMITS", "SHARED_MODELS", "numeric_keywords",
           "tighten_operations"]

_LIMITS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems",
           "maxItems", "enum", "const")
_NUMERIC = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_COMPATIBLE = {"integer": ("integer", "number"), "number": ("number", "integer")}

# (operationId, location, name) -> schema keywords (and description text) merged into the documented schema.
SERVICE_LIMITS: dict[tuple[str, str, str], dict[str, Any]] = {
    ("files_api_routes_get_signed_url", "query", "expiry"): {
        "maximum": SIGNED_URL_MAX_HOURS,  # the setting's default
        "x-description": "At most `signed_url_max_hours` (configuration) hours; the documented maximum is its "
                         "default. Out of range: 400.",
    },
    ("files_api_routes_upload_file", "body", "purpose"): {
        "replace": {"type": "string", "enum": list(FILE_PURPOSES), "default": "fine-tune"},
        "x-description": "`fine-tune` files must be named `.jsonl` (400 INVALID_FILE_TYPE otherwise).",
    },
    ("files_api_routes_upload_file", "body", "expiry"): {
        "minimum": 1,
        "maximum": MAX_FILE_EXPIRY_HOURS,
        "x-description": "Hours until the file expires; an integer in range (400 otherwise).",
    },
    ("files_api_routes_upload_file", "body", "file"): {
        "x-description": "Must not be empty; `.jsonl` when the purpose is `fine-tune`.",
    },
    ("chat_completion_v1_chat_completions_post", "body", "messages"): {
        "x-description": "The last message must be a user or tool message, or an assistant message with "
                         "`prefix: true` (400 INVALID_MESSAGE_ORDER otherwise).",
    },
    ("embeddings_v1_embeddings_post", "body", "output_dimension"): {
        "x-description": "Only the model's native dimension is served (384 for the bundled `mistral-embed` "
                         "stand-in); any other value is a 400 UNSUPPORTED_OUTPUT_DIMENSION.",
    },
    ("jobs_api_routes_batch_create_batch_job", "body", "agent_id"): {
        "x-description": "An agent of this workspace (400 AGENT_NOT_FOUND otherwise): the job's lines run as agent "
                         "completions (the agent's model, instructions, tools and completion args; a line's "
                         "`model` is ignored). Needs `endpoint` `/v1/chat/completions` (400 UNSUPPORTED_ENDPOINT) "
                         "and no `model` (400 INVALID_BATCH_INPUT).",
    },
    **agent_limits(),
    **classifier_limits(),
    **ocr_limits(),
    **transcription_limits(),
    **conversation_limits(),
    **fine_tuning_limits(),
}


# Response fields where the server answers more than Mistral's spec describes (spec component, property) -> (our
# response model, its field): the documented schema becomes the model's, so conforming answers validate.
RESPONSE_FIELDS: dict[tuple[str, str], tuple[type[BaseModel], str, str]] = {
    ("EmbeddingResponseData", "embedding"): (
        EmbeddingData, "embedding", "Numbers for `output_dtype` float, integers for the integer dtypes, a base64 "
        "string with `encoding_format: base64`."),
    ("CompletionArgs", "reasoning_effort"): (
        CompletionArgs, "reasoning_effort", "Reasoning models only: how much of max_tokens the thinking may use "
        "(SDK 3.7.0's values; Mistral's spec lists `high` and `none`); stored and echoed as given."),
}


# Components used in requests and responses alike whose limits the server's model enforces on the way in (so its
# answers keep them too): component name -> that model. Tightened like request components.
SHARED_MODELS: dict[str, type[BaseModel]] = {"CompletionArgs": CompletionArgs}


# Spec enums the server widens, in requests and responses alike: component name -> the values it accepts and answers.
COMPONENT_ENUMS: dict[str, tuple[str, ...]] = {"FilePurpose": FILE_PURPOSES}


def numeric_keywords(node: Any) -> Any:
    """Numeric limits written as strings in the published spec (``"minimum": "1e-08"``) as numbers, everywhere."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _NUMERIC and isinstance(value, str):
                number = float(value)
                value = int(number) if number.is_integer() else number
            out[key] = numeric_keywords(value)
        return out
    if isinstance(node, list):
        return [numeric_keywords(v) for v in node]
    return node


def tighten_operations(operations: dict[str, dict[str, Any]], schemas: dict[str, Any],
                       registry_ops: Iterable[Operation]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """New (operations, schemas) maps with each implemented operation's request and query schemas tightened."""
    operations, schemas = copy.deepcopy(operations), copy.deepcopy(schemas)
    for name, values in COMPONENT_ENUMS.items():
        schemas[name]["enum"] = list(values)
    _require_discriminators(schemas)
    for name, model in SHARED_MODELS.items():
        _tighten_properties(schemas[name], model, schemas)
    for op in registry_ops:
        spec_op = operations[op.operation_id]["operation"]
        if op.query is not None:
            _tighten_query(spec_op, op.query, schemas)
        if op.request is not None:
            _tighten_body(spec_op, op.request, schemas)
        _apply_service_limits(op.operation_id, spec_op, schemas)
    for (name, prop), (model, field, note) in RESPONSE_FIELDS.items():
        ours = model.model_json_schema(mode="serialization")["properties"][field]
        schemas[name]["properties"][prop] = {k: v for k, v in ours.items() if k != "title"} | {"description": note}
    return operations, schemas


def _require_discriminators(schemas: dict[str, Any]) -> None:
    """OpenAPI requires a discriminator's property in every schema it maps to; the spec leaves it optional (the
    message ``role``), while the server, like Mistral's, needs it to tell the message kinds apart."""
    for node in _walk(schemas):
        discriminator = node.get("discriminator")
        if not isinstance(discriminator, dict) or "mapping" not in discriminator:
            continue
        for ref in discriminator["mapping"].values():
            target = schemas.get(ref.rsplit("/", 1)[-1], {})
            if discriminator["propertyName"] in target.get("properties", {}):
                target["required"] = sorted({*target.get("required", []), discriminator["propertyName"]})


def _walk(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_walk(value))
    return found


def _tighten_query(spec_op: dict[str, Any], model: type[BaseModel], schemas: dict[str, Any]) -> None:
    model_schema = model.model_json_schema(mode="validation")
    props, defs = model_schema.get("properties", {}), _Defs(model_schema.get("$defs", {}), schemas)
    for param in spec_op.get("parameters", []):
        if param.get("in") == "query" and param["name"] in props:
            if "content" in param:  # a JSON-encoded parameter (?metadata={...}): its content describes the value
                continue
            param["schema"] = _tighten(param.get("schema", {}), props[param["name"]], defs)
            if param["name"] in model_schema.get("required", []):
                param["required"] = True


def _tighten_body(spec_op: dict[str, Any], model: type[BaseModel], schemas: dict[str, Any]) -> None:
    content = spec_op.get("requestBody", {}).get("content", {})
    media = content.get("application/json") or content.get("multipart/form-data")  # a form's fields: transcription
    if media is None:
        return
    # A request component (ChatCompletionRequest, ...) is tightened in place: only request bodies use it.
    for target in _body_parts(media["schema"], schemas):
        model_schema = _tighten_properties(target, model, schemas)
        props = target.get("properties", {})
        required = set(target.get("required", [])) | (set(model_schema.get("required", [])) & set(props))
        if required:
            target["required"] = sorted(required)
        if model.model_config.get("extra") != "forbid":
            target.pop("additionalProperties", None)  # unknown fields are ignored, not refused


def _tighten_properties(target: dict[str, Any], model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    """``target``'s properties tightened from ``model``'s; returns the model's JSON schema."""
    model_schema = model.model_json_schema(mode="validation")
    defs = _Defs(model_schema.get("$defs", {}), schemas)
    props = target.get("properties", {})
    for name, model_prop in model_schema.get("properties", {}).items():
        if name in props:
            props[name] = _tighten(props[name], model_prop, defs)
    return model_schema


def _body_parts(schema: dict[str, Any], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    """A body schema and, for ``allOf`` bodies (the conversation requests: a base plus ``stream``), its parts."""
    if "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
    return [schema, *(p for part in schema.get("allOf", ()) for p in _body_parts(part, schemas))]


class _Defs:
    """The model's ``$defs`` and the spec's components, for resolving references on either side."""

    def __init__(self, model: dict[str, Any], spec: dict[str, Any]) -> None:
        self.model, self.spec = model, spec


def _tighten(target: dict[str, Any], model_prop: dict[str, Any], defs: _Defs) -> dict[str, Any]:
    model_prop = _resolve(model_prop, defs)
    branches = [_resolve(b, defs) for b in (model_prop.get("anyOf") or model_prop.get("oneOf") or [model_prop])]
    nullable = any(b.get("type") == "null" for b in branches)
    target = dict(target)
    for key in ("anyOf", "oneOf"):
        if key in target:
            kept = [b for b in target[key] if nullable or b.get("type") != "null"]
            kept = [_tighten_branch(b, branches, defs) for b in kept]
            if len(kept) == 1 and key == "anyOf":
                merged = {k: v for k, v in target.items() if k != key}
                return {**kept[0], **merged}
            target[key] = kept
            return target
    return _tighten_branch(target, branches, defs)


def _tighten_branch(branch: dict[str, Any], model_branches: list[dict[str, Any]],
                    defs: _Defs) -> dict[str, Any]:
    if "$ref" in branch:
        # A shared component stays as Mistral publishes it, unless it is an enum the server widens or narrows.
        shared = defs.spec.get(branch["$ref"].rsplit("/", 1)[-1], {})
        ours = next((m["enum"] for m in model_branches if "enum" in m), None)
        if "enum" in shared and ours is not None and set(ours) != set(shared["enum"]):
            return {"type": "string", "enum": list(ours)}
        return branch
    kind = branch.get("type")
    match = next((m for m in model_branches if m.get("type") in _COMPATIBLE.get(kind, (kind,))), None)
    if match is None:
        return branch
    branch = dict(branch)
    for key in _LIMITS:
        if key in match and not (key in ("enum", "const") and key in branch):
            branch[key] = match[key]
    if kind == "array" and isinstance(branch.get("items"), dict) and "items" in match:
        branch["items"] = _tighten(branch["items"], match["items"], defs)
    return branch


def _resolve(schema: dict[str, Any], defs: _Defs) -> dict[str, Any]:
    while "$ref" in schema and schema["$ref"].startswith("#/$defs/"):
        schema = defs.model[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _apply_service_limits(operation_id: str, spec_op: dict[str, Any], schemas: dict[str, Any]) -> None:
    for (op_id, location, name), limits in SERVICE_LIMITS.items():
        if op_id != operation_id:
            continue
        places = _locate(spec_op, schemas, location, name)
        if not places:
            raise KeyError(f"{operation_id}: no {location} parameter {name!r} in the spec")
        limits = dict(limits)
        note = limits.pop("x-description", None)
        replaced = limits.pop("replace", None)
        for i, (holder, key) in enumerate(places):  # an allOf body may name a field in several parts
            schema = dict(replaced) if replaced else dict(holder[key])
            schema.update(limits)
            if note and i == 0:  # described once
                base = holder[key].get("description", "").strip()
                # the spec's sentences often lack their final stop: the note must not run on from them
                schema["description"] = f"{base}{'' if not base or base.endswith(('.', ':')) else '.'} {note}".strip()
            holder[key] = schema


def _locate(spec_op: dict[str, Any], schemas: dict[str, Any], location: str,
            name: str) -> list[tuple[dict[str, Any], str]]:
    """Where the parameter's schema is: (holder, key) pairs (several for a field in more than one allOf part)."""
    if location == "query":
        for param in spec_op.get("parameters", []):
            if param["in"] == "query" and param["name"] == name:
                # a JSON-encoded parameter (?metadata=) keeps its schema under content
                return [(param["content"]["application/json"], "schema") if "content" in param else (param, "schema")]
        return []
    for media in spec_op.get("requestBody", {}).get("content", {}).values():
        found = [(schema["properties"], name) for schema in _body_parts(media["schema"], schemas)
                 if name in schema.get("properties", {})]
        if found:
            return found
    return []
