"""Classifier test helpers: a keyword encoder behind the ``EmbeddingEngine`` protocol, and the moderation model on
the fake classifier engine for tests that need one in a fake-engine catalog."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import Embeddings
from mistral_gateway.engines.head_format import ClassifierHead, save_head
from mistral_gateway.engines.manager import EngineManager

__all__ = ["MODERATION_MODEL", "WORDS", "KeywordEncoder", "keyword_dataset", "serve_head_file",
           "with_fake_moderation"]

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


def keyword_dataset(keys: Sequence[str] = WORDS, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """240 texts of six filler words plus each of ``keys`` with probability 0.4; labels: which keys each holds."""
    rng = np.random.default_rng(seed)
    fillers = ["the", "a", "quiet", "day", "some", "plan", "note", "today", "later", "again"]
    texts, labels = [], []
    for i in range(240):
        has = [bool(rng.random() < 0.4) for _ in keys]
        words = [str(w) for w in rng.choice(fillers, size=6)] + [w for w, h in zip(keys, has, strict=True) if h]
        rng.shuffle(words)
        texts.append(" ".join(words) + f" {i}")
        labels.append(has)
    return texts, np.array(labels)


def serve_head_file(tmp_path: Path, head: ClassifierHead, encoder: KeywordEncoder, texts: list[str],
                    target: str = "harm") -> list[dict[str, float]]:
    """Save ``head`` as a file, serve it through a catalog entry over ``encoder`` (the server's loader, as a user's
    own classifier is served) and return ``target``'s scores for ``texts``."""
    save_head(head, tmp_path / "mine.safetensors")
    settings = Settings(data_dir=tmp_path, models=[
        ModelEntry(id="enc", engine="fake", capabilities=[]),
        ModelEntry(id="mine", engine="classifier", encoder="enc", path=str(tmp_path / "mine.safetensors"),
                   capabilities=["classification"])])
    manager = EngineManager(settings, loaders={("fake", "embedding"): lambda *_: encoder})

    async def classify() -> list[dict[str, float]]:
        engine = await manager.classifier(settings.models[1])
        return [c.scores[target] for c in await engine.classify(texts)]

    return asyncio.run(classify())


def with_fake_moderation(models: list[ModelEntry]) -> list[ModelEntry]:
    """``models`` (already on fake engines) plus a fake moderation entry unless one of them serves moderation."""
    if any("moderation" in m.capabilities for m in models):
        return models
    return [*models, ModelEntry(id="mistral-moderation-2411", aliases=[MODERATION_MODEL], engine="fake",
                                capabilities=["moderation", "classification"], max_context_length=256)]
