"""Reading request bodies within limits, and validating JSON bodies and query strings into models."""

from __future__ import annotations

import functools
import typing
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams
from starlette.requests import Request

from mistral_gateway.app.validation import validate_body, validation_detail
from mistral_gateway.errors import BadRequest, PayloadTooLarge, ValidationFailed

__all__ = ["json_object", "parse_query", "read_body", "read_json", "read_json_object", "validate_body",
           "validation_detail"]

M = typing.TypeVar("M", bound=BaseModel)


def declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19):  # int() takes other scripts' digits; 19: int64
        raise BadRequest("invalid Content-Length header")
    return int(raw)


async def read_body(request: Request, limit: int) -> bytes:
    length = declared_length(request)
    if length is not None and length > limit:
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, model: type[M], limit: int) -> M:
    return validate_body(model, await read_json_object(request, limit))


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, unvalidated (what upstreams receive, unknown fields included)."""
    return json_object(await read_body(request, limit))


def json_object(body: bytes) -> dict[str, Any]:
    """A body already read, as a JSON object (400 if empty, malformed or not an object)."""
    if not body.strip():
        raise BadRequest("request body is empty; a JSON object is required", code="EMPTY_BODY")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON body: {exc}", code="MALFORMED_JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the JSON body must be an object", code="MALFORMED_JSON")
    return data


def parse_query(model: type[M], query: QueryParams, exclude: frozenset[str] = frozenset()) -> M:
    """Arrays arrive form+explode style (``?status=A&status=B``); ``name[]`` is accepted too."""
    data: dict[str, Any] = {}
    if query:
        for name, is_list in _query_fields(model):
            if name in exclude:
                continue
            if is_list:
                values = query.getlist(name) + query.getlist(name + "[]")
                if values:
                    data[name] = values
            elif name in query:
                data[name] = query[name]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(validation_detail(exc, "query")) from None


@functools.cache
def _query_fields(model: type[BaseModel]) -> tuple[tuple[str, bool], ...]:
    return tuple((name, _is_list(field.annotation)) for name, field in model.model_fields.items())


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is list:
        return True
    return any(typing.get_origin(arg) is list for arg in typing.get_args(annotation))
