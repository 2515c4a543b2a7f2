"""Batch files line by line: splitting a byte stream into bounded lines, parsing input lines, shaping result lines."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["AGENT_ENDPOINT", "LineError", "ParsedLine", "error_line", "line_endpoint", "parse_line", "result_line",
           "split_lines"]

MAX_CUSTOM_ID = 512
# A job with an agent_id names the chat endpoint (the spec's list has no other) and its lines run as agent
# completions: the agent's model, instructions, tools and completion args applied to each line's messages.
AGENT_ENDPOINT = "/v1/chat/completions"
_AGENT_LINES_RUN_AS = "/v1/agents/completions"


def line_endpoint(endpoint: str, agent_id: str | None) -> str:
    """The operation a job's lines run as."""
    return _AGENT_LINES_RUN_AS if agent_id is not None else endpoint


def split_lines(chunks: Iterable[bytes], max_bytes: int) -> Iterator[bytes | None]:
    """Lines without their newline; a line longer than ``max_bytes`` comes out as None, never held whole."""
    buf = bytearray()
    too_long = False
    for chunk in chunks:
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if not too_long:
                buf += chunk[start:] if nl < 0 else chunk[start:nl]
                if len(buf) > max_bytes:
                    too_long = True
                    buf.clear()
            if nl < 0:
                break
            yield None if too_long else bytes(buf)
            buf.clear()
            too_long = False
            start = nl + 1
    if buf or too_long:
        yield None if too_long else bytes(buf)


@dataclass(frozen=True, slots=True)
class ParsedLine:
    custom_id: str | None
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LineError:
    custom_id: str | None
    message: str


def parse_line(raw: bytes | None, max_bytes: int, model: str | None,
               agent_id: str | None = None) -> ParsedLine | LineError:
    """One input line ``{"custom_id": ..., "body": {...}}``; the job's model fills a body without one, and a job's
    agent replaces any model the line names (the agent's own model serves it)."""
    if raw is None:
        return LineError(None, f"line exceeds {max_bytes} bytes")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return LineError(None, f"malformed JSON line: {exc}")
    if not isinstance(data, dict):
        return LineError(None, "a batch line must be a JSON object with a 'body' object")
    custom_id = data.get("custom_id")
    if isinstance(custom_id, int) and not isinstance(custom_id, bool):
        custom_id = str(custom_id)
    if custom_id is not None and not (isinstance(custom_id, str) and len(custom_id) <= MAX_CUSTOM_ID):
        return LineError(None, f"custom_id must be a string of at most {MAX_CUSTOM_ID} characters")
    body = data.get("body")
    if not isinstance(body, dict):
        return LineError(custom_id, "a batch line needs a 'body' object")
    if agent_id is not None:
        body = {key: value for key, value in body.items() if key != "model"} | {"agent_id": agent_id}
    elif model is not None:
        body = {**body, "model": model}  # one model per batch: the job's
    elif not body.get("model"):
        return LineError(custom_id, "no model: set 'model' on the job or in the line's body")
    return ParsedLine(custom_id, body)


def _line_id(batch_id: str, n: int) -> str:
    return f"batch-{batch_id.replace('-', '')[:8]}-{n}-{uuid.uuid4()}"


def result_line(batch_id: str, n: int, custom_id: str | None, status: int, body: dict[str, Any]) -> bytes:
    return orjson.dumps({"id": _line_id(batch_id, n), "custom_id": custom_id,
                         "response": {"status_code": status, "body": body}, "error": None}) + b"\n"


def error_line(batch_id: str, n: int, custom_id: str | None, message: str, code: str | None,
               response: tuple[int, dict[str, Any]] | None = None) -> bytes:
    shown = None if response is None else {"status_code": response[0], "body": response[1]}
    return orjson.dumps({"id": _line_id(batch_id, n), "custom_id": custom_id, "response": shown,
                         "error": {"message": message, "code": code}}) + b"\n"
