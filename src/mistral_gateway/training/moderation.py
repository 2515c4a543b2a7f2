"""Training and evaluating the moderation model: a multi-label head (one shared hidden layer, a logistic output per
Mistral category) over all-MiniLM-L6-v2 sentence embeddings, Presidio entity scores, a profanity probability and
the per-category logits of a hashed n-gram model stacked under it (``training.ngrams``)
(``scripts/train_moderation.py``, ``scripts/eval_moderation.py``).

Reproducible: the split is a hash of each text, the folds and solvers have fixed seeds, and features come from the
same code the server runs (``engines.classifier.featurize``) on the same encoder engine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mistral_gateway.config import Settings
from mistral_gateway.engines.base import MODERATION_CATEGORIES, ClassifierEngine, ClassifierTarget, EmbeddingEngine
from mistral_gateway.engines.classifier import HeadClassifierEngine, encoder_tokenizer, featurize
from mistral_gateway.engines.features import extractor_for
from mistral_gateway.engines.head_format import ClassifierHead, EncoderInfo, FeatureSpec
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.training.data import Example, data_sha256, load_examples, split
from mistral_gateway.training.heads import ALPHA, FOLDS, HIDDEN, SEEDS, fit_head, metrics
from mistral_gateway.training.ngrams import NGRAM_C, fit_ngrams

__all__ = ["ENCODER_ID", "FEATURES", "SEED", "evaluate", "train", "train_from_directory"]

ENCODER_ID = "all-minilm-l6-v2"  # the catalog entry whose engine computes the embeddings
ENCODER_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SEED = 0
PROBE_TEXT = "mistral-gateway classifier head probe: the encoder must embed this the same way."
PROBE_VALUES = 8
PRESIDIO_ENTITIES = ("PERSON", "LOCATION", "PHONE_NUMBER", "EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN",
                     "US_PASSPORT", "US_DRIVER_LICENSE", "US_BANK_NUMBER", "IP_ADDRESS", "DATE_TIME", "URL", "NRP",
                     "ORGANIZATION", "AGE", "UK_NHS", "US_ITIN", "CRYPTO", "MEDICAL_LICENSE")
FEATURES = (FeatureSpec("presidio", len(PRESIDIO_ENTITIES), {"entities": list(PRESIDIO_ENTITIES)}),
            FeatureSpec("profanity", 1))
TARGET = ClassifierTarget("moderation", MODERATION_CATEGORIES, multi_label=True)


def label_matrix(examples: Sequence[Example]) -> np.ndarray:
    return np.array([[c in e.labels for c in MODERATION_CATEGORIES] for e in examples], dtype=bool)


async def train(examples: Sequence[Example], encoder: EmbeddingEngine, *, seed: int = SEED,
                features: Sequence[FeatureSpec] = FEATURES, log: Any = print) -> ClassifierHead:
    """The moderation head trained on the train split of ``examples``, its held-out figures in ``training``."""
    started = time.monotonic()
    train_rows, heldout_rows = split(examples)
    extractors = [extractor_for(spec) for spec in features]
    texts, y = [e.text for e in train_rows], label_matrix(train_rows)
    x_train, _ = await featurize(encoder, extractors, texts)
    ngrams = fit_ngrams(texts, y, MODERATION_CATEGORIES, seed=seed, folds=FOLDS)
    x_train = np.concatenate([x_train, ngrams.oof], axis=1)  # out-of-fold: what the n-gram model says of unseen text
    log(f"features for {len(train_rows)} texts ({x_train.shape[1]} each) in {time.monotonic() - started:.0f} s")
    fitted = fit_head(x_train, y, seed=seed)
    features = (*features, ngrams.spec)
    extractors.append(extractor_for(ngrams.spec, (ngrams.weight, ngrams.bias)))
    probe = (await encoder.embed([PROBE_TEXT])).vectors[0][:PROBE_VALUES]
    head = ClassifierHead(
        encoder=EncoderInfo(ENCODER_MODEL, encoder.dimensions, encoder.max_tokens, PROBE_TEXT,
                            tuple(round(float(v), 6) for v in probe)),
        features=(FeatureSpec("embedding", encoder.dimensions), *features),
        targets=(TARGET,),
        weights={TARGET.name: fitted.weight},
        biases={TARGET.name: fitted.bias},
        hidden={TARGET.name: (fitted.hidden_weight, fitted.hidden_bias)},
        thresholds=dict(zip(MODERATION_CATEGORIES, fitted.thresholds, strict=True)),
        feature_weights={ngrams.spec.name: (ngrams.weight, ngrams.bias)},
    )
    # measured through the serving engine (long lines chunked as in production), never used to choose anything
    engine = HeadClassifierEngine(head, encoder, extractors=extractors, tokenizer=encoder_tokenizer(encoder))
    heldout = await evaluate(engine, heldout_rows)
    training = {
        "data_sha256": data_sha256(examples), "seed": seed, "train_examples": len(train_rows),
        "heldout_examples": len(heldout_rows), "split": "sha256(normalised text) % 100 < 20 -> held-out",
        "model": f"MLP, one hidden ReLU layer of {HIDDEN} shared by the categories, logistic outputs, "
                 f"alpha {ALPHA}, {SEEDS} seeds with their logits averaged (one layer of {SEEDS * HIDDEN}), "
                 f"standardised features: the embedding, presidio, profanity and the "
                 f"out-of-fold logits of a hashed word+char n-gram logistic regression per category (C {NGRAM_C}); "
                 f"thresholds by {FOLDS}-fold CV on the train split",
        "cv_f1": {c: round(f, 4) for c, f in zip(MODERATION_CATEGORIES, fitted.cv_f1, strict=True)},
        "heldout": heldout, "tool": "scripts/train_moderation.py",
    }
    log(f"trained in {time.monotonic() - started:.0f} s; held-out macro F1 {heldout['macro_f1']}")
    return replace(head, training=training)


async def evaluate(engine: ClassifierEngine, examples: Sequence[Example]) -> dict[str, object]:
    """Per-category precision/recall/F1 of a loaded moderation engine on ``examples``, at its thresholds."""
    results = await engine.classify([e.text for e in examples])
    scores = np.array([[r.scores[TARGET.name][c] for c in MODERATION_CATEGORIES] for r in results])
    return metrics(scores, label_matrix(examples), [engine.thresholds[c] for c in MODERATION_CATEGORIES],
                   MODERATION_CATEGORIES)


def heldout_examples(directory: Path) -> list[Example]:
    return split(load_examples(directory))[1]


def train_from_directory(directory: Path, settings: Settings, *, seed: int = SEED, log: Any = print) -> ClassifierHead:
    """Load the encoder through the engine manager (as the server does) and train on ``directory``."""
    manager = EngineManager(settings)
    entry = next(e for e in settings.models if e.id == ENCODER_ID)

    async def run() -> ClassifierHead:
        return await train(load_examples(directory), await manager.embedding(entry), seed=seed, log=log)

    try:
        return asyncio.run(run())
    finally:
        manager.close()
