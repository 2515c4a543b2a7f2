"""Test doubles for classifier tests: a keyword encoder behind the ``EmbeddingEngine`` protocol."""

from __future__ import annotations

from collections.abc import Sequence

from mistral_gateway.engines.base import Embeddings

WORDS = ("knife", "bank", "cancer")  # one embedding dimension each, plus a constant


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
