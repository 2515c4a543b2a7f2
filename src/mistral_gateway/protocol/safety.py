"""Mistral's ``safe_prompt``: one rule for the local engines and for upstreams that cannot apply it themselves.

The guardrail text goes at the head of the system prompt, followed by a blank line; a system message is added when
there is none. Services apply it to parsed messages (``services.reasoning.with_system``), the ``openai`` upstream
translation to the JSON body (``with_safe_prompt``); native upstreams get ``safe_prompt`` itself.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SAFE_PROMPT", "with_safe_prompt"]

# Mistral's documented guardrail system prompt, prepended when safe_prompt is true.
SAFE_PROMPT = ("Always assist with care, respect, and truth. Respond with utmost utility yet securely. Avoid harmful, "
               "unethical, prejudiced, or negative content. Ensure replies promote fairness and positivity.")


def with_safe_prompt(messages: list[Any]) -> list[Any]:
    """JSON chat messages with ``SAFE_PROMPT`` at the head of the system prompt (the local engines' rule)."""
    first = messages[0] if messages else None
    if isinstance(first, dict) and first.get("role") == "system":
        content = first.get("content")
        if isinstance(content, str):
            return [{**first, "content": f"{SAFE_PROMPT}\n\n{content}"}, *messages[1:]]
        if isinstance(content, list):
            return [{**first, "content": [{"type": "text", "text": f"{SAFE_PROMPT}\n\n"}, *content]}, *messages[1:]]
    return [{"role": "system", "content": SAFE_PROMPT}, *messages]
