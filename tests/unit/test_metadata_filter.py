"""The metadata matching shared by the agents, conversations and batch listings."""

from __future__ import annotations

from mistral_gateway.storage.metadata_filter import has_pairs, matching_page


def test_has_pairs_needs_every_key_present_and_equal() -> None:
    assert has_pairs({"a": 1, "b": "x"}, {"a": 1})
    assert not has_pairs({"a": 2}, {"a": 1})
    assert not has_pairs(None, {"a": 1})
    # a wanted null matches a stored null, not a missing key
    assert has_pairs({"a": None}, {"a": None})
    assert not has_pairs({}, {"a": None})


ROWS = [{"id": i, "meta": {"team": "red" if i % 3 == 0 else "blue"}} for i in range(20)]
RED = [r["id"] for r in ROWS if r["id"] % 3 == 0]  # 0, 3, ..., 18: seven rows


def page_ids(offset: int, limit: int, count_all: bool = False) -> tuple[list[int], int]:
    page, matched = matching_page(ROWS, lambda r: r["meta"], {"team": "red"}, offset=offset, limit=limit,
                                  count_all=count_all)
    return [r["id"] for r in page], matched


def test_pages_walk_the_matches_in_order() -> None:
    assert page_ids(0, 3)[0] == RED[:3]
    assert page_ids(3, 3)[0] == RED[3:6]
    assert page_ids(6, 3)[0] == RED[6:]
    assert page_ids(7, 3)[0] == []


def test_count_all_counts_past_the_page() -> None:
    assert page_ids(0, 2, count_all=True) == (RED[:2], len(RED))
    # without it the scan stops as soon as the page is full
    assert page_ids(0, 2) == (RED[:2], 2)
