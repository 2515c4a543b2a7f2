"""The hashed n-gram feature: its model is fitted out-of-fold for stacking, its weights travel in the head file, and
the server's loader builds its extractor from them (a label only the n-grams can see is learned and served)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from classifier_support import WORDS, KeywordEncoder, keyword_dataset, serve_head_file
from mistral_gateway.engines.base import ClassifierTarget
from mistral_gateway.engines.features import NgramFeatures, extractor_for, ngram_matrix
from mistral_gateway.engines.head_format import ClassifierHead, EncoderInfo, FeatureSpec, HeadError
from mistral_gateway.training.heads import fit_head
from mistral_gateway.training.ngrams import fit_ngrams

LABELS = ("violence_and_threats", "financial", "health", "pii")
KEYS = (*WORDS, "passport")  # the keyword encoder sees the first three; only the n-grams see "passport"
OPTIONS = {"n_features": 4096, "word": [1, 1], "char": [3, 4]}


def _dataset() -> tuple[list[str], np.ndarray]:
    return keyword_dataset(KEYS, seed=1)


def test_the_matrix_is_hashed_and_normalised() -> None:
    m = ngram_matrix(["a knife", "A KNIFE", ""], OPTIONS)
    assert m.shape == (3, 8192)
    assert np.allclose(m[0].toarray(), m[1].toarray())  # lower-cased
    assert np.isclose(np.sqrt(m[0].multiply(m[0]).sum()), 1.0) and m[2].nnz == 0
    assert ngram_matrix(["a knife"], {"n_features": 512, "char": [2, 3]}).shape == (1, 512)


def test_out_of_fold_logits_and_the_final_model() -> None:
    texts, y = _dataset()
    fitted = fit_ngrams(texts, y, LABELS, seed=0, folds=3, options=OPTIONS, c=10.0)
    assert fitted.oof.shape == (240, 4) and fitted.weight.shape == (4, 8192) and fitted.bias.shape == (4,)
    assert fitted.spec == FeatureSpec("ngrams", 4, {"labels": list(LABELS), **OPTIONS})
    assert ((fitted.oof > 0) == y).mean() > 0.95  # each row scored by a model that never saw it, still right
    again = fit_ngrams(texts, y, LABELS, seed=0, folds=3, options=OPTIONS, c=10.0)
    assert np.array_equal(again.weight, fitted.weight) and np.array_equal(again.oof, fitted.oof)
    logits = NgramFeatures(fitted.spec, fitted.weight, fitted.bias)(["my passport please", "a calm day"])
    assert logits.dtype == np.float32 and logits[0, 3] > 0 > logits[1, 3]
    assert NgramFeatures(fitted.spec, fitted.weight, fitted.bias)([]).shape == (0, 4)
    with pytest.raises(HeadError, match="needs its weight and bias"):
        extractor_for(fitted.spec)


def test_a_stacked_head_with_ngrams_is_served_from_its_file(tmp_path: Path) -> None:
    texts, y = _dataset()
    encoder = KeywordEncoder()
    ngrams = fit_ngrams(texts, y, LABELS, seed=0, folds=3, options=OPTIONS, c=10.0)
    x = np.asarray(asyncio.run(encoder.embed(texts)).vectors, dtype=np.float32)
    fitted = fit_head(np.hstack([x, ngrams.oof]), y, seed=0, hidden=8, alpha=0.01, folds=3, max_iter=2000)
    assert fitted.cv_f1[3] > 0.9  # pii: learned from the n-gram feature alone
    head = ClassifierHead(
        encoder=EncoderInfo("keyword-encoder", encoder.dimensions, 32),
        features=(FeatureSpec("embedding", encoder.dimensions), ngrams.spec),
        targets=(ClassifierTarget("harm", LABELS, True),),
        weights={"harm": fitted.weight}, biases={"harm": fitted.bias},
        hidden={"harm": (fitted.hidden_weight, fitted.hidden_bias)},
        thresholds=dict(zip(LABELS, fitted.thresholds, strict=True)),
        feature_weights={"ngrams": (ngrams.weight, ngrams.bias)})
    texts = ["the day passport note some plan later", "a quiet knife today the note again", "a quiet day some plan"]
    passport, knife, calm = serve_head_file(tmp_path, head, encoder, texts)
    assert passport["pii"] > 0.9 and passport["violence_and_threats"] < 0.1
    assert knife["violence_and_threats"] > 0.9 and knife["pii"] < 0.1
    assert max(calm.values()) < 0.1
