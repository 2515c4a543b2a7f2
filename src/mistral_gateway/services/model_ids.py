"""Which Mistral family a model id belongs to: ``<prefix>[-<size>][-<version>]``, the prefix taken from the family
table (longest first). Runs on every request with a name that is not a catalog name, on caller-controlled input:
the length is bounded and every pattern is a flat, anchored one (no nested quantifiers, so no backtracking blow-up).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mistral_gateway.model_families import ModelFamily

__all__ = ["MAX_ID_LENGTH", "FamilyMatch", "FamilyTable"]

MAX_ID_LENGTH = 64  # Mistral's longest id is under 40 characters
_ID = re.compile(r"[a-z0-9][a-z0-9.-]*")
_SIZE = re.compile(r"\d{1,3}b|\d{1,2}x\d{1,3}b")  # 8b, 14b, 8x7b, 8x22b
_NUMBER = re.compile(r"\d{1,2}")  # a major or minor version: 3, 3-5 / 3.5
_YYMM = re.compile(r"\d\d(?:0[1-9]|1[0-2])")  # a dated release: 2411


@dataclass(frozen=True, slots=True)
class FamilyMatch:
    family: ModelFamily
    size: str | None  # e.g. "8b" in ministral-8b-2410
    version: str | None  # "latest", "2410", "3-5" (dots normalised to dashes), or None for a bare family name


class FamilyTable:
    """Immutable: prefix -> family. Later rows replace earlier ones with the same prefix (operator over defaults)."""

    def __init__(self, families: Iterable[ModelFamily]) -> None:
        self._by_prefix: dict[str, ModelFamily] = {}
        for family in families:
            self._by_prefix.pop(family.prefix, None)  # keeps listing order = the last declaration's order
            self._by_prefix[family.prefix] = family
        self._max_parts = max((p.count("-") + 1 for p in self._by_prefix), default=0)

    @property
    def families(self) -> tuple[ModelFamily, ...]:
        return tuple(self._by_prefix.values())

    def match(self, name: str) -> FamilyMatch | None:
        if len(name) > MAX_ID_LENGTH or not _ID.fullmatch(name):
            return None
        parts = name.replace(".", "-").split("-")
        for k in range(min(len(parts), self._max_parts), 0, -1):  # longest prefix first
            family = self._by_prefix.get("-".join(parts[:k]))
            if family is None:
                continue
            tail = _tail(parts[k:])
            if tail is not None:
                return FamilyMatch(family, *tail)
        return None


def _tail(tokens: list[str]) -> tuple[str | None, str | None] | None:
    """``[size] [version]`` after the prefix, as (size, version); None when the tail is not of that shape."""
    size = None
    if tokens and _SIZE.fullmatch(tokens[0]):
        size, tokens = tokens[0], tokens[1:]
    if not tokens:
        return size, None
    if len(tokens) == 1 and (tokens[0] == "latest" or _YYMM.fullmatch(tokens[0]) or _NUMBER.fullmatch(tokens[0])):
        return size, tokens[0]
    if len(tokens) == 2 and _NUMBER.fullmatch(tokens[0]) and _NUMBER.fullmatch(tokens[1]):
        return size, f"{tokens[0]}-{tokens[1]}"
    return None
