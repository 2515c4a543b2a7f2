"""Checks, once at startup, that each operation answers what its registry row says it answers.

An operation declares its results in its return annotation (``ChatCompletionResponse | StreamResult[CompletionChunk]
| RawJSON | RawEvents``); the row says the response kind (``json``, ``binary``, ``empty``), whether it streams and
with which chunk model, and the success body's model. The endpoint renders by the row alone, so a result the row
does not describe would otherwise only fail on the request that meets it.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from mistral_gateway.app.context import Work
from mistral_gateway.app.results import BinaryResult, NoContent, RawEvents, RawJSON, StreamResult
from mistral_gateway.registry import Operation, Registry

__all__ = ["check_operations", "result_problems"]


def check_operations(registry: Registry, operations: Mapping[str, Work]) -> None:
    """Raises ValueError unless the implemented rows are exactly the operations given, each answering its row."""
    implemented = {op.id for op in registry if op.implemented}
    problems = [f"registry rows marked implemented have no operation: {sorted(implemented - set(operations))}"
                ] if implemented - set(operations) else []
    if set(operations) - implemented:
        problems.append(f"operations without an implemented registry row: {sorted(set(operations) - implemented)}")
    for op_id in sorted(implemented & set(operations)):
        problems += result_problems(registry.get(op_id), operations[op_id])
    if problems:
        raise ValueError("the application layer and the registry disagree:\n  " + "\n  ".join(problems))


def result_problems(op: Operation, work: Work) -> list[str]:
    """What is wrong with ``work``'s declared results for ``op``'s row (empty: nothing)."""
    try:
        declared = typing.get_type_hints(work).get("return")
    except Exception as exc:  # a name the annotation uses that its module does not import
        return [f"{op.id}: its return annotation does not resolve ({exc})"]
    if declared is None:
        return [f"{op.id}: {work.__qualname__} declares no return type"]
    return [f"{op.id}: {problem}" for t in _members(declared) if (problem := _problem(op, t))]


def _members(declared: Any) -> Iterable[Any]:
    if typing.get_origin(declared) is typing.Annotated:
        return _members(typing.get_args(declared)[0])
    if typing.get_origin(declared) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(declared) for m in _members(arg)]
    return [declared]


def _problem(op: Operation, t: Any) -> str | None:
    origin = typing.get_origin(t) or t
    sse = origin in (StreamResult, RawEvents)
    if sse:
        if op.stream == "never":
            return f"returns {_name(t)} but the row does not stream (stream='never')"
        chunk = typing.get_args(t)[0] if typing.get_args(t) else None
        if origin is StreamResult and not (op.chunk is not None and isinstance(chunk, type)
                                           and issubclass(chunk, op.chunk)):
            return f"streams {_name(chunk)} chunks, the row's chunk model is {_name(op.chunk)}"
        return None
    if op.stream == "always":
        return f"returns {_name(t)} but the row always streams"
    kind = {BinaryResult: "binary", NoContent: "empty", RawJSON: "json"}.get(origin)
    if kind is None and isinstance(origin, type) and issubclass(origin, BaseModel):
        kind = "json"
        if op.response is not None and not any(issubclass(origin, m) for m in _members(op.response)):
            return f"returns {_name(t)}, the row's response model is {_name(op.response)}"
    if kind is None:
        return f"returns {_name(t)}, which is no result type (a model, RawJSON, StreamResult[...], BinaryResult...)"
    if kind != op.response_kind:
        return f"returns {_name(t)} ({kind}) but the row's response_kind is {op.response_kind!r}"
    return None


def _name(t: Any) -> str:
    return getattr(t, "__name__", None) or repr(t)
