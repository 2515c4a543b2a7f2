"""Validating a JSON body into an operation's request model: a 422 in FastAPI's shape (HTTP and batch lines alike)."""

from __future__ import annotations

import typing
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from mistral_gateway.echo import shorten
from mistral_gateway.errors import ValidationFailed

__all__ = ["MAX_ECHO_CHARS", "MAX_ERRORS", "validate_body", "validation_detail"]

M = typing.TypeVar("M", bound=BaseModel)


def validate_body(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(validation_detail(exc, "body")) from None


MAX_ECHO_CHARS = 128  # what a 422 echoes of an input: a multi-MB input must not come back (or amplify) whole
MAX_ERRORS = 20  # a list of 100,000 bad items is described by its first errors


def validation_detail(exc: ValidationError, where: str) -> list[dict[str, Any]]:
    """pydantic errors in FastAPI's shape, JSON-safe (``ctx`` values are stringified), long inputs cut short."""
    items = []
    for err in exc.errors(include_url=False)[:MAX_ERRORS]:
        item: dict[str, Any] = {"type": err["type"], "loc": [where, *err["loc"]], "msg": shorten(err["msg"], 512)}
        if "input" in err:
            item["input"] = _json_safe(err["input"])
        if err.get("ctx"):
            item["ctx"] = {k: _json_safe(v) for k, v in err["ctx"].items()}
        items.append(item)
    return items


def _json_safe(value: Any) -> Any:
    if isinstance(value, str):
        return shorten(value, MAX_ECHO_CHARS)
    try:
        dumped = orjson.dumps(value)
    except TypeError:
        return shorten(str(value), MAX_ECHO_CHARS)
    if len(dumped) > MAX_ECHO_CHARS:  # a big object or list: a prefix of its JSON, as text
        return shorten(dumped.decode("utf-8", "replace"), MAX_ECHO_CHARS)
    return value
