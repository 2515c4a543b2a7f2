"""What error messages may repeat of a caller's input: a short prefix, never a multi-KB value."""

from __future__ import annotations

__all__ = ["ECHO_CHARS", "shorten"]

ECHO_CHARS = 64


def shorten(text: str, limit: int = ECHO_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"
