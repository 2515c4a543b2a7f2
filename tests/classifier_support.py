"""Classifier test helpers: a keyword encoder behind the ``EmbeddingEngine`` protocol, and the moderation model on
the fake classifier engine for tests that need one in a fake-engine catalog."""

from __future__ import annotations

from collections.abc import Sequence

from mistral_gateway.config import ModelEntry
from mistral_gateway.engines.base import Embeddings

__all__ = ["MODERATION_MODEL", "WORDS", "KeywordEncoder", "with_fake_moderation"]

WORDS = ("knife", "bank", "cancer")  # one embedding dimension each, plus a constant
MODERATION_MODEL = "mistral-moderation-latest"


class KeywordEncoder:
    """Dimension i is 1 when WORDS[i] is among the first ``max_tokens`` words (it truncates, as a real encoder)."""

    def __init__(self, max_tokens: int = 32) -> None:
        self.dimensions = len(WORDS) + 1
        self.max_tokens = max_tokens
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        self.calls.append(list(texts))
        vectors, counts = [], []
        for text in texts:
            words = text.lower().split()[: self.max_tokens - 2]
            vectors.append([float(w in words) for w in WORDS] + [1.0])
            counts.append(len(words) + 2)
        return Embeddings(vectors=vectors, token_counts=counts)


def with_fake_moderation(models: list[ModelEntry]) -> list[ModelEntry]:
    """``models`` (already on fake engines) plus a fake moderation entry unless one of them serves moderation."""
    if any("moderation" in m.capabilities for m in models):
        return models
    return [*models, ModelEntry(id="mistral-moderation-2411", aliases=[MODERATION_MODEL], engine="fake",
                                capabilities=["moderation", "classification"], max_context_length=256)]
