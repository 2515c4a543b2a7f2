"""Keyword terms and reciprocal rank fusion, shared by both index engines."""

from __future__ import annotations

import pytest

from mistral_gateway.storage.library_index import MAX_TERMS, RRF_K, affordable_terms, fuse_rankings, keyword_terms


def test_keyword_terms_drop_common_words_and_punctuation() -> None:
    assert keyword_terms('What is the "zq-7781" part\'s price?') == ["zq", "7781", "part", "s", "price"]
    assert keyword_terms("Où est la Cathédrale?") == ["où", "est", "la", "cathédrale"]
    assert keyword_terms("the of and ?!") == []
    assert keyword_terms("Ferry ferry FERRY") == ["ferry"]
    assert len(keyword_terms(" ".join(f"w{i}" for i in range(100)))) == MAX_TERMS


def test_fusion_rewards_agreement_and_keeps_k() -> None:
    fused = fuse_rankings([[1, 2, 3], [3, 4]], 3)
    assert [i for i, _ in fused] == [3, 1, 2]  # 3 is in both rankings
    assert fused[0][1] == pytest.approx(1 / (RRF_K + 3) + 1 / (RRF_K + 1))
    assert fuse_rankings([[5, 6]], 1) == [(5, pytest.approx(1 / (RRF_K + 1)))]
    assert fuse_rankings([[], []], 5) == []


def test_affordable_terms_keep_the_rarest_within_the_budget() -> None:
    counts = [("common", 4000), ("rare", 3), ("absent", 0), ("mid", 1500), ("name", 1)]
    assert affordable_terms(counts, 5000) == ["name", "rare", "mid"]
    assert affordable_terms(counts, 10_000) == ["name", "rare", "mid", "common"]
    assert affordable_terms([("everywhere", 5001)], 5000) == []
