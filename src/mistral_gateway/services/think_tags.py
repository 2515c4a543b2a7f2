"""Splitting a reasoning-trained model's output at its ``<think>...</think>`` tags, incrementally (a tag may arrive
cut across several streamed pieces)."""

from __future__ import annotations

__all__ = ["CLOSE", "OPEN", "ThinkTagParser"]

OPEN, CLOSE = "<think>", "</think>"


def _held_back(text: str, tag: str) -> int:
    """How many characters at the end of ``text`` could be the start of ``tag`` (so must wait for more)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ThinkTagParser:
    """Feed it text, get ``(is_thinking, piece)`` pairs. The thinking is what comes between an opening tag at the
    very start (after whitespace) and the closing tag; output that does not start with the tag is all answer.
    ``opened``: the prompt already ended with ``<think>`` (templates that open it for the model)."""

    def __init__(self, *, opened: bool = False) -> None:
        self._state = "thinking" if opened else "start"
        self._fresh = True  # strip whitespace at the start of the thinking and of the answer
        self._buffer = ""

    def feed(self, text: str) -> list[tuple[bool, str]]:
        self._buffer += text
        out: list[tuple[bool, str]] = []
        while True:
            before = (self._state, self._buffer)
            self._step(out)
            if (self._state, self._buffer) == before:
                return [(k, p) for k, p in out if p]

    def close(self) -> list[tuple[bool, str]]:
        """The end of the output: what was held back (a cut tag, an unfinished thinking) goes out as it is."""
        rest, self._buffer = self._buffer, ""
        if self._state == "thinking":
            return [(True, rest.rstrip())] if rest.strip() else []
        if self._state == "start" and rest.strip():
            return [(False, rest.lstrip())]
        return []

    def _step(self, out: list[tuple[bool, str]]) -> None:
        if self._state == "start":
            head = self._buffer.lstrip()
            if head.startswith(OPEN):
                self._state, self._buffer = "thinking", head[len(OPEN):]
            elif not OPEN.startswith(head):  # not a tag: the model answers without thinking
                self._state, self._buffer = "answer", head
        elif self._state == "thinking":
            if self._fresh:
                self._buffer = self._buffer.lstrip()
                self._fresh = not self._buffer
                if self._fresh:
                    return
            end = self._buffer.find(CLOSE)
            if end >= 0:
                out.append((True, self._buffer[:end].rstrip()))
                self._state, self._buffer, self._fresh = "answer", self._buffer[end + len(CLOSE):], True
                return
            cut = len(self._buffer) - _held_back(self._buffer, CLOSE)
            while cut and self._buffer[cut - 1].isspace():  # whitespace before the closing tag is not thinking
                cut -= 1
            out.append((True, self._buffer[:cut]))
            self._buffer = self._buffer[cut:]
        elif self._state == "answer":
            if self._fresh:
                self._buffer = self._buffer.lstrip()
                self._fresh = not self._buffer
            out.append((False, self._buffer))
            self._buffer = ""
