"""A conversation's entries as the chat messages of its next model call, and the names handoffs go by.

Consecutive function calls (and the text before them) form one assistant message; a handoff is shown to the next
agent as a transfer call and its result, and a ``document_library`` execution as a call of that tool and the
numbered passages it retrieved, so the last message is one a model answers (a tool result).
"""

from __future__ import annotations

import re
from typing import Any

from mistral_gateway.services.library_tool import TOOL_NAME, context_text

__all__ = ["active_agent_id", "chat_messages", "handoff_function"]


def handoff_function(agent_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", agent_name.lower()).strip("_")[:48] or "agent"
    return f"transfer_to_{slug}"


def chat_messages(entries: list[dict[str, Any]], instructions: str | None) -> list[dict[str, Any]]:
    """Entries as chat messages: consecutive function calls (and the text before them) form one assistant
    message; a handoff is shown to the next agent as a transfer call and its result, so it answers next."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": instructions}] if instructions else []
    for e in entries:
        kind = e["type"]
        if kind == "message.input":
            message = {"role": e["role"], "content": e["content"]}
            messages.append({**message, "prefix": True} if e.get("prefix") else message)
        elif kind == "message.output":
            messages.append({"role": "assistant", "content": _text(e["content"])})
        elif kind == "function.call":
            _tool_call(messages, e["tool_call_id"], e["name"], e["arguments"])
        elif kind == "function.result":
            messages.append({"role": "tool", "content": e["result"], "tool_call_id": e["tool_call_id"]})
        elif kind == "tool.execution" and e["name"] == TOOL_NAME:  # the retrieval, re-rendered from its info
            call_id = e["id"][-9:]
            _tool_call(messages, call_id, TOOL_NAME, e["arguments"])
            messages.append({"role": "tool", "content": context_text(e.get("info")), "tool_call_id": call_id})
        elif kind == "agent.handoff":
            call_id = e["id"][-9:]
            _tool_call(messages, call_id, handoff_function(e["next_agent_name"]), "{}")
            messages.append({"role": "tool", "content": f"Transferred to {e['next_agent_name']}.",
                             "tool_call_id": call_id})
    return messages


def _tool_call(messages: list[dict[str, Any]], call_id: str, name: str, arguments: Any) -> None:
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant" and not last.get("prefix"):
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text")


def active_agent_id(entries: list[dict[str, Any]], default: str | None) -> str | None:
    """The agent the conversation is with after these entries: the last handoff's target, else ``default``."""
    for e in reversed(entries):
        if e["type"] == "agent.handoff":
            return e["next_agent_id"]
    return default
