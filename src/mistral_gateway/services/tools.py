"""Function calling on local models: constrained decoding of tool calls, detection, parsing and Mistral ids.

The prompt carries the tools through the model's own chat template (Hermes-style ``<tool_call>`` blocks for the
bundled Qwen models). When a call is forced (``any``/``required``/a named function) or when the model starts one
under ``auto``, the call is generated under a grammar that admits only the declared names and arguments matching
each function's JSON schema, so arguments are always valid.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from typing import Any

__all__ = ["call_grammar", "looks_like_call", "parse_tool_calls", "tool_call_id"]

_ALPHABET = string.ascii_letters + string.digits
_BLOCK = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)
_OPENERS = ("<tool_call>", "```json", "```", "{\"name\"", "{")


def tool_call_id() -> str:
    """Mistral's tool call ids are exactly 9 alphanumeric characters."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(9))


def call_grammar(functions: list[dict[str, Any]], *, parallel: bool) -> str:
    """An llguidance Lark grammar: one (or, if parallel, several) ``<tool_call>`` blocks, each naming one of
    ``functions`` with arguments constrained by that function's JSON schema."""
    rules = []
    names = []
    for i, fn in enumerate(functions):
        head = '{"name": ' + json.dumps(fn["name"]) + ', "arguments": '
        schema = fn.get("parameters") or {"type": "object"}
        rules.append(f"f{i}: {json.dumps(head)} a{i} \"}}\"")
        rules.append(f"a{i}: %json {json.dumps(schema)}")
        names.append(f"f{i}")
    start = 'start: call ("\\n" call)*' if parallel else "start: call"
    return "\n".join([
        "%llguidance {}",
        start,
        'call: "<tool_call>\\n" body "\\n</tool_call>"',
        "body: " + " | ".join(names),
        *rules,
    ])


def looks_like_call(text: str) -> bool | None:
    """Whether a model's first output is starting a tool call; None while too little has been seen."""
    head = text.lstrip()
    if not head:
        return None
    for opener in _OPENERS:
        if head.startswith(opener):
            return True
        if opener.startswith(head):
            return None  # could still become an opener
    return False


def parse_tool_calls(text: str, names: set[str]) -> list[dict[str, Any]]:
    """``<tool_call>{...}</tool_call>`` blocks → Mistral tool calls (arguments as a JSON string)."""
    calls = []
    for index, match in enumerate(_BLOCK.finditer(text)):
        try:
            value = json.loads(match.group(1))
        except ValueError:
            continue
        if not isinstance(value, dict) or value.get("name") not in names:
            continue
        arguments = value.get("arguments", {})
        calls.append({
            "id": tool_call_id(),
            "type": "function",
            "function": {"name": value["name"], "arguments": json.dumps(arguments, ensure_ascii=False)},
            "index": index,
        })
    return calls
