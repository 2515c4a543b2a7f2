"""Metadata filters on listings, matched in Python: JSON paths differ per database and mangle some keys."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

__all__ = ["has_pairs", "matching_page"]

Row = TypeVar("Row")


def has_pairs(metadata: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> bool:
    """Every wanted key is present with an equal value (a stored null matches only a wanted null)."""
    return metadata is not None and all(k in metadata and metadata[k] == v for k, v in wanted.items())


def matching_page(rows: Iterable[Row], metadata_of: Callable[[Row], Mapping[str, Any] | None],
                  wanted: Mapping[str, Any], *, offset: int, limit: int,
                  count_all: bool = False) -> tuple[list[Row], int]:
    """The matching rows from ``offset`` (at most ``limit``) and how many matched. Without ``count_all`` the scan
    stops once the page is full, so the count is only exact when the caller asks for it."""
    page: list[Row] = []
    matched = 0
    for row in rows:
        if not has_pairs(metadata_of(row), wanted):
            continue
        if offset <= matched < offset + limit:
            page.append(row)
        matched += 1
        if not count_all and len(page) == limit:
            break
    return page, matched
