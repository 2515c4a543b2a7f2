"""Classifier heads over the local sentence encoder (``ClassifierEngine``): the moderation model and any head file.

One ``classify`` call: every input is cut into chunks that fit the encoder's window (token windows with a small
overlap, so a phrase on a boundary is read whole once); ALL chunks of ALL inputs go to the encoder in one ``embed``
call while the extra features (presidio, profanity, n-grams) are computed on a worker thread beside it; the head
scores each chunk and an input's score per label is the maximum over its chunks (a harmful passage anywhere flags
the input).

The encoder is the embedding engine the manager already holds for the encoder's catalog entry: one copy of MiniLM
serves embeddings and classification, and its micro-batcher merges both kinds of traffic.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from anyio.to_thread import run_sync

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import Classification, EmbeddingEngine, EngineError
from mistral_gateway.engines.features import FeatureExtractor, extractor_for
from mistral_gateway.engines.head_format import ClassifierHead, HeadError, load_head, merge_thresholds

__all__ = ["CHUNK_OVERLAP", "Chunker", "HeadClassifierEngine", "bundled_head", "encoder_tokenizer", "featurize", "load"]

log = logging.getLogger("mistral_gateway.engines")

CHUNK_OVERLAP = 16  # tokens two neighbouring windows share
# Longer inputs are read in windows of at most this many tokens (and the encoder's window): about the length of the
# training lines (3-80 words), so a short harmful passage is not diluted by the mean pooling over a long window.
CHUNK_TOKENS = 128
_SENTENCE_END = re.compile(r"(?<=[.!?\u3002\uff01\uff1f])\s+|\n+")
PROBE_TOLERANCE = 2e-3  # an encoder whose probe embedding differs more is not the one the head was trained on


class Chunker:
    """Splits texts into pieces of at most ``max_tokens`` encoder tokens (special tokens included). With the
    encoder's tokenizer the pieces are exact character spans of the text; without one (fakes) whitespace words
    stand for tokens."""

    def __init__(self, max_tokens: int, tokenizer: Any = None, overlap: int = CHUNK_OVERLAP,
                 window: int = CHUNK_TOKENS) -> None:
        self.window = max(8, min(window, max_tokens - 2))  # [CLS] ... [SEP]
        self.overlap = min(overlap, self.window // 4)
        # A private copy: HF fast tokenizers must not be used from two threads at once, and the encoder's own
        # copies belong to its batcher threads.
        self._tokenizer = copy.deepcopy(tokenizer) if tokenizer is not None else None
        if self._tokenizer is not None:
            self._tokenizer.model_max_length = 1 << 30  # it only measures here: no "longer than 512" warning
        self._lock = threading.Lock()

    def split(self, text: str) -> list[str]:
        """``text`` whole when it fits the window; else its sentences, each cut into windows when longer. Sentences,
        not fixed windows: mean pooling over a window of mostly harmless text dilutes one harmful sentence in it
        below its threshold (measured: a threat after 600 tokens of a recipe scored 0.07 in 128-token windows,
        0.9998 alone)."""
        if self._fits(text):
            return [text]
        pieces = [piece for sentence in _SENTENCE_END.split(text) if sentence.strip()
                  for piece in self._windows(sentence.strip())]
        return pieces or [text]

    def _fits(self, text: str) -> bool:
        if self._tokenizer is None:
            return len(text.split()) <= self.window
        # a word piece covers at least one character: a short text fits without tokenizing it
        return len(text) <= self.window or len(self._offsets(text)) <= self.window

    def _windows(self, text: str) -> list[str]:
        step = self.window - self.overlap
        if self._tokenizer is None:
            words = text.split()
            if len(words) <= self.window:
                return [text]
            return [" ".join(words[i:i + self.window]) for i in range(0, len(words) - self.overlap, step)]
        offsets = self._offsets(text) if len(text) > self.window else []
        if len(offsets) <= self.window:
            return [text]
        return [text[offsets[start][0]:offsets[min(start + self.window, len(offsets)) - 1][1]]
                for start in range(0, len(offsets) - self.overlap, step)]

    def _offsets(self, text: str) -> list[tuple[int, int]]:
        with self._lock:
            return self._tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,  # type: ignore[misc]
                                   return_attention_mask=False, return_token_type_ids=False)["offset_mapping"]


class HeadClassifierEngine:
    """Implements ``ClassifierEngine`` with a ``ClassifierHead`` over ``encoder`` plus the head's extra
    ``extractors`` (one per feature after the embedding, in the head's order)."""

    def __init__(self, head: ClassifierHead, encoder: EmbeddingEngine, *,
                 extractors: Sequence[FeatureExtractor] = (), thresholds: Mapping[str, float] | None = None,
                 tokenizer: Any = None, name: str = "classifier") -> None:
        sizes = [f.size for f in head.features[1:]]
        if [e.size for e in extractors] != sizes:
            raise EngineError(f"classifier {name!r}: extractors of sizes {[e.size for e in extractors]}, the head "
                              f"wants {sizes}")
        if encoder.dimensions != head.encoder.dimensions:
            raise EngineError(f"classifier {name!r}: its head was trained on {head.encoder.model!r} "
                              f"({head.encoder.dimensions} dimensions); the encoder gives {encoder.dimensions}")
        self.head = head
        self.name = name
        self.targets = head.targets
        self.thresholds = merge_thresholds(head, thresholds or {})
        self.max_tokens = min(encoder.max_tokens, head.encoder.max_tokens)
        self._encoder = encoder
        self._extractors = tuple(extractors)
        self._chunker = Chunker(self.max_tokens, tokenizer)

    async def check_encoder(self) -> None:
        """Compare the encoder's embedding of the head's probe text with the one recorded at training."""
        enc = self.head.encoder
        if enc.probe_text is None:
            return
        got = (await self._encoder.embed([enc.probe_text])).vectors[0][:len(enc.probe_values)]
        drift = float(np.max(np.abs(np.asarray(got) - np.asarray(enc.probe_values))))
        if drift > PROBE_TOLERANCE:
            raise EngineError(f"classifier {self.name!r}: the encoder is not {enc.model!r}, which its head was "
                              f"trained on (probe embedding differs by {drift:.4f})")

    async def classify(self, texts: Sequence[str]) -> list[Classification]:
        if not texts:
            return []
        chunks = await run_sync(self._split, list(texts))
        flat = [piece for pieces in chunks for piece in pieces]
        x, counts = await featurize(self._encoder, self._extractors, flat, self.name)
        try:
            scores = self.head.scores(x)
        except (ValueError, FloatingPointError) as exc:
            raise EngineError(f"classifier {self.name!r}: {exc}") from exc
        results, start = [], 0
        for pieces in chunks:
            end = start + len(pieces)
            results.append(Classification(
                scores={t.name: dict(zip(t.labels, scores[t.name][start:end].max(axis=0).tolist(), strict=True))
                        for t in self.targets},
                tokens=int(sum(counts[start:end]))))
            start = end
        return results

    def _split(self, texts: list[str]) -> list[list[str]]:
        try:
            return [self._chunker.split(text) or [text] for text in texts]
        except Exception as exc:  # the tokenizer failed on this input: an engine failure, not a 500
            raise EngineError(f"classifier {self.name!r}: splitting the input failed ({exc})") from exc

    def close(self) -> None:
        """Nothing of its own to release: the encoder belongs to the manager (it also serves embeddings)."""


async def featurize(encoder: EmbeddingEngine, extractors: Sequence[FeatureExtractor], texts: list[str],
                    name: str = "classifier") -> tuple[np.ndarray, list[int]]:
    """A head's input rows for ``texts`` (each read whole, up to the encoder's window) and their token counts: the
    embedding from one ``embed`` call, the extra features computed on a worker thread meanwhile. Serving and
    training (mistral_gateway.training) both build their features here, so a head sees the same inputs in both."""

    def extra() -> np.ndarray:
        try:
            return np.concatenate([extract(texts) for extract in extractors], axis=1).astype(np.float32)
        except Exception as exc:  # presidio/spaCy/profanity failures are engine failures
            raise EngineError(f"classifier {name!r}: computing features failed ({exc})") from exc

    pending = asyncio.ensure_future(run_sync(extra)) if extractors else None
    try:
        embedded = await encoder.embed(texts)
    except BaseException:
        if pending is not None:
            pending.cancel()
        raise
    x = np.asarray(embedded.vectors, dtype=np.float32).reshape(len(texts), encoder.dimensions)
    if pending is not None:
        x = np.concatenate([x, await pending], axis=1)
    return x, list(embedded.token_counts or [0] * len(texts))


def bundled_head(name: str) -> Path:
    """The head file shipped in the package as ``mistral_gateway/classifiers/<name>.safetensors``."""
    path = Path(str(resources.files("mistral_gateway") / "classifiers" / f"{name}.safetensors"))
    if not path.is_file():
        raise EngineError(f"no bundled classifier head named {name!r} ({path} is missing)")
    return path


def load(entry: ModelEntry, path: Path | None, _settings: Settings, *,
         encoder: EmbeddingEngine) -> HeadClassifierEngine:
    """Load ``entry``'s head (``path``, or its bundled ``head``) over ``encoder`` (the engine of ``entry.encoder``)
    and build the extra feature extractors its head names. Blocking: the manager runs it on a worker thread."""
    head_path = path or (bundled_head(entry.head) if entry.head else None)
    if head_path is None:
        raise EngineError(f"model {entry.id!r}: no classifier head configured (give it a `path` or a bundled `head`)")
    try:
        head = load_head(head_path)
        extractors = [extractor_for(spec, head.feature_weights.get(spec.name)) for spec in head.features[1:]]
        engine = HeadClassifierEngine(head, encoder, extractors=extractors, thresholds=entry.thresholds,
                                      tokenizer=encoder_tokenizer(encoder), name=entry.id)
    except (HeadError, ImportError, OSError) as exc:  # a bad head file, or a feature's package not installed
        raise EngineError(f"model {entry.id!r}: {exc}") from exc
    log.info("loaded classifier %s from %s: targets %s, features %s", entry.id, head_path,
             [t.name for t in head.targets], [f.name for f in head.features])
    return engine


def encoder_tokenizer(encoder: EmbeddingEngine) -> Any:
    """The encoder's tokenizer when it exposes its model (the sentence-transformers engine), else None."""
    model = getattr(encoder, "model", None)
    return getattr(model, "tokenizer", None)
