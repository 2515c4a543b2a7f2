"""Training code: the stable split, the dataset hash, thresholds and metrics, and a tiny head trained in-process,
written as a head file and served through a catalog entry (the path a user's own classifier takes)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from classifier_support import KeywordEncoder, keyword_dataset, serve_head_file
from mistral_gateway.engines.base import ClassifierTarget
from mistral_gateway.engines.head_format import ClassifierHead, EncoderInfo, FeatureSpec
from mistral_gateway.training.data import Example, data_sha256, is_heldout, load_examples, normalise, split
from mistral_gateway.training.heads import best_threshold, fit_head, metrics


def test_the_split_depends_on_the_normalised_text_only() -> None:
    texts = [f"line number {i} about something" for i in range(2000)]
    share = sum(is_heldout(t) for t in texts) / len(texts)
    assert 0.17 < share < 0.23
    for t in texts[:50]:
        assert is_heldout(t) == is_heldout("  " + t.upper().replace(" ", "   ") + " ")
    assert normalise("\uff26\uff55\uff4c\uff4c  WIDTH\tText") == "full width text"  # NFKC folds full-width


def test_dataset_reading_and_hash(tmp_path: Path) -> None:
    rows = [{"text": "a", "labels": ["pii"]}, {"text": "b", "labels": []}, {"text": "c", "labels": ["law", "pii"]}]
    (tmp_path / "one.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n")
    (tmp_path / "two.jsonl").write_text(json.dumps(rows[2]) + "\n")
    examples = load_examples(tmp_path)
    assert examples == [Example("a", frozenset({"pii"})), Example("b", frozenset()),
                        Example("c", frozenset({"law", "pii"}))]
    assert data_sha256(examples) == data_sha256(examples[::-1])
    assert data_sha256(examples) != data_sha256([Example("a", frozenset()), *examples[1:]])
    train, heldout = split(examples)
    assert sorted(e.text for e in train + heldout) == ["a", "b", "c"]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"text": "x", "labels": ["spam"]}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: unknown labels \['spam'\]"):
        load_examples(tmp_path)


def test_thresholds_and_metrics() -> None:
    scores = np.array([0.1, 0.4, 0.6, 0.9])
    truth = np.array([False, False, True, True])
    threshold, f1 = best_threshold(scores, truth)
    assert f1 == 1.0 and 0.4 < threshold <= 0.6
    out = metrics(np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.7]]), np.array([[1, 0], [0, 1], [0, 1]]), [0.5, 0.5],
                  ["a", "b"])
    assert out["a"] == {"precision": 0.5, "recall": 1.0, "f1": 0.6667, "support": 1}
    assert out["b"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert out["macro_f1"] == pytest.approx((0.6667 + 1.0) / 2, abs=1e-4)


def _tiny_dataset() -> tuple[list[str], np.ndarray]:
    return keyword_dataset()


def test_a_tiny_head_trained_in_process_is_served_from_a_head_file(tmp_path: Path) -> None:
    texts, y = _tiny_dataset()
    encoder = KeywordEncoder()
    x = np.asarray(asyncio.run(encoder.embed(texts)).vectors, dtype=np.float32)
    fitted = fit_head(x, y, seed=0, hidden=8, alpha=0.01, folds=3, max_iter=2000)
    assert min(fitted.cv_f1) > 0.95
    labels = ("violence_and_threats", "financial", "health")
    head = ClassifierHead(
        encoder=EncoderInfo("keyword-encoder", encoder.dimensions, 32),
        features=(FeatureSpec("embedding", encoder.dimensions),), targets=(ClassifierTarget("harm", labels, True),),
        weights={"harm": fitted.weight}, biases={"harm": fitted.bias},
        hidden={"harm": (fitted.hidden_weight, fitted.hidden_bias)},
        thresholds=dict(zip(labels, fitted.thresholds, strict=True)), training={"seed": 0})
    bank, knife_cancer, calm = serve_head_file(tmp_path, head, encoder, ["a bank note", "a knife and cancer", "calm"])
    assert bank["financial"] > 0.9 and bank["violence_and_threats"] < 0.1
    assert knife_cancer["violence_and_threats"] > 0.9 and knife_cancer["health"] > 0.9
    assert max(calm.values()) < 0.1


def test_an_ensemble_of_seeds_is_one_hidden_layer_averaging_their_logits() -> None:
    from mistral_gateway.training.heads import _ensemble, _fit, _predict

    texts, y = _tiny_dataset()
    x = np.asarray(asyncio.run(KeywordEncoder().embed(texts)).vectors, dtype=np.float32)
    (w1, b1), (w2, b2) = _ensemble(x, y, 4, 0.01, 5, 3, 300)
    assert w1.shape == (12, x.shape[1]) and b1.shape == (12,) and w2.shape == (3, 12) and b2.shape == (3,)
    logits = []
    for seed in (5, 6, 7):
        p = np.clip(_predict(_fit(x, y, 4, 0.01, seed, 300), x), 1e-12, 1 - 1e-12)
        logits.append(np.log(p / (1 - p)))
    expected = 1 / (1 + np.exp(-np.mean(logits, axis=0)))
    assert np.allclose(_predict(((w1, b1), (w2, b2)), x), expected, atol=1e-4)
    fitted = fit_head(x, y, seed=0, hidden=8, alpha=0.01, folds=3, max_iter=2000, seeds=2)
    assert fitted.hidden_weight.shape == (16, x.shape[1]) and min(fitted.cv_f1) > 0.95
