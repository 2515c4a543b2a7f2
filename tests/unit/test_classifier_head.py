"""The classifier-head file format: save/load round trips, and every malformed part refused with a clear error."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from mistral_gateway.engines.base import ClassifierTarget
from mistral_gateway.engines.head_format import (
    HEADER_KEY,
    ClassifierHead,
    EncoderInfo,
    FeatureSpec,
    HeadError,
    load_head,
    merge_thresholds,
    save_head,
)

DIM = 6


def make_head(**changes: Any) -> ClassifierHead:
    rng = np.random.default_rng(7)
    features = (FeatureSpec("embedding", DIM), FeatureSpec("presidio", 2, {"entities": ["PERSON", "EMAIL_ADDRESS"]}),
                FeatureSpec("profanity", 1))
    inputs = DIM + 3
    fields: dict[str, Any] = {
        "encoder": EncoderInfo("test/encoder", DIM, 128, "probe text", (0.1, -0.2, 0.3)),
        "features": features,
        "targets": (ClassifierTarget("moderation", ("a", "b", "c"), multi_label=True),
                    ClassifierTarget("sentiment", ("neg", "pos"))),
        "weights": {"moderation": rng.normal(size=(3, inputs)).astype(np.float32),
                    "sentiment": rng.normal(size=(2, inputs)).astype(np.float32)},
        "biases": {"moderation": rng.normal(size=3).astype(np.float32),
                   "sentiment": rng.normal(size=2).astype(np.float32)},
        "thresholds": {"a": 0.5, "b": 0.3, "c": 0.72},
        "training": {"data_sha256": "ab" * 32, "seed": 3, "heldout": {"macro_f1": 0.9}},
    }
    fields.update(changes)
    return ClassifierHead(**fields)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    head = make_head()
    save_head(head, tmp_path / "h.safetensors")
    loaded = load_head(tmp_path / "h.safetensors")
    assert loaded.encoder == head.encoder
    assert loaded.features == head.features and loaded.targets == head.targets
    assert loaded.thresholds == head.thresholds and loaded.training == head.training
    for name in ("moderation", "sentiment"):
        assert np.array_equal(loaded.weights[name], head.weights[name])
        assert np.array_equal(loaded.biases[name], head.biases[name])
    x = np.random.default_rng(1).normal(size=(4, head.inputs)).astype(np.float32)
    scores = loaded.scores(x)
    assert scores["moderation"].shape == (4, 3) and ((scores["moderation"] > 0) & (scores["moderation"] < 1)).all()
    assert np.allclose(scores["sentiment"].sum(axis=1), 1.0)  # single-label: a softmax over its labels
    expected = 1 / (1 + np.exp(-(x.astype(np.float64) @ head.weights["moderation"].T + head.biases["moderation"])))
    assert np.allclose(scores["moderation"], expected)


def test_large_logits_do_not_overflow() -> None:
    head = make_head()
    x = np.full((1, head.inputs), 1e6, np.float32)
    for scores in head.scores(x).values():
        assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()


@pytest.mark.parametrize(("changes", "message"), [
    ({"thresholds": {"a": 0.5, "b": 0.3, "c": 1.0}}, "strictly between 0 and 1"),
    ({"thresholds": {"a": 0.5, "b": 0.0, "c": 0.5}}, "strictly between 0 and 1"),
    ({"thresholds": {"a": 0.5, "b": 0.3}}, "missing ['c']"),
    ({"thresholds": {"a": 0.5, "b": 0.3, "c": 0.5, "neg": 0.5}}, "unknown ['neg']"),
    ({"features": (FeatureSpec("embedding", DIM + 1),)}, "'embedding' of size 6"),
    ({"features": (FeatureSpec("profanity", 1), FeatureSpec("embedding", DIM))}, "first feature"),
    ({"features": (FeatureSpec("embedding", DIM), FeatureSpec("sentiment-lexicon", 3))}, "unknown feature"),
    ({"features": (FeatureSpec("embedding", DIM), FeatureSpec("presidio", 3, {"entities": ["PERSON"]}))},
     "must list 3 names"),
    ({"targets": (ClassifierTarget("moderation", ("a", "a", "c"), multi_label=True),
                  ClassifierTarget("sentiment", ("neg", "pos")))}, "unique labels"),
    ({"targets": (ClassifierTarget("moderation", ("a", "b", "c"), multi_label=True),
                  ClassifierTarget("sentiment", ("only",)))}, "at least two labels"),
    ({"targets": (ClassifierTarget("bad name!", ("a", "b", "c"), multi_label=True),
                  ClassifierTarget("sentiment", ("neg", "pos")))}, "target names"),
])
def test_inconsistent_heads_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(HeadError) as err:
        make_head(**changes)
    assert message in str(err.value)


def test_weight_shapes_must_match_labels_and_features() -> None:
    head = make_head()
    with pytest.raises(HeadError, match=r"weight shape \(3, 8\), expected \(3, 9\)"):
        replace(head, weights={**head.weights, "moderation": np.zeros((3, 8), np.float32)})
    with pytest.raises(HeadError, match="bias shape"):
        replace(head, biases={**head.biases, "sentiment": np.zeros(3, np.float32)})
    bad = head.weights["moderation"].copy()
    bad[0, 0] = np.nan
    with pytest.raises(HeadError, match="finite"):
        replace(head, weights={**head.weights, "moderation": bad})


def _write(path: Path, header: Any, tensors: dict[str, np.ndarray] | None = None) -> Path:
    head = make_head()
    tensors = tensors if tensors is not None else {
        **{f"{n}.weight": w for n, w in head.weights.items()}, **{f"{n}.bias": b for n, b in head.biases.items()}}
    metadata = {} if header is None else {HEADER_KEY: header if isinstance(header, str) else json.dumps(header)}
    save_file(tensors, str(path), metadata=metadata)
    return path


def _header(tmp_path: Path) -> dict[str, Any]:
    save_head(make_head(), tmp_path / "ok.safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ok.safetensors"), framework="np") as fh:
        return json.loads(fh.metadata()[HEADER_KEY])  # type: ignore[no-any-return]


@pytest.mark.parametrize(("edit", "message"), [
    (lambda h: None, "no 'mistral_gateway.classifier' header"),
    (lambda h: "{not json", "not JSON"),
    (lambda h: [1, 2], "not a JSON object"),
    (lambda h: {**h, "format": "other"}, "format 'other'"),
    (lambda h: {**h, "version": 2}, "format version 2"),
    (lambda h: {**h, "targets": []}, "'targets' must be a non-empty list"),
    (lambda h: {**h, "encoder": {"model": "x", "dimensions": 0, "max_tokens": 128}}, "encoder.dimensions"),
    (lambda h: {**h, "encoder": {**h["encoder"], "probe": {"text": "t", "values": ["x"]}}}, "encoder.probe"),
    (lambda h: {**h, "thresholds": {**h["thresholds"], "a": "high"}}, "strictly between 0 and 1"),
    (lambda h: {**h, "targets": [{**h["targets"][0], "multi_label": "yes"}, h["targets"][1]]}, "true or false"),
])
def test_malformed_files_are_refused_naming_the_file(tmp_path: Path, edit: Any, message: str) -> None:
    path = _write(tmp_path / "bad.safetensors", edit(_header(tmp_path)))
    with pytest.raises(HeadError) as err:
        load_head(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_tensors_must_match_the_targets(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.safetensors", _header(tmp_path), {"moderation.weight": np.zeros((3, 9), np.float32)})
    with pytest.raises(HeadError, match="do not match its targets"):
        load_head(path)


def test_missing_and_non_safetensors_files(tmp_path: Path) -> None:
    with pytest.raises(HeadError, match="cannot read it"):
        load_head(tmp_path / "absent.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(HeadError, match="not a safetensors file"):
        load_head(tmp_path / "junk.safetensors")


def test_threshold_overrides_merge_over_the_defaults() -> None:
    head = make_head()
    assert merge_thresholds(head, {"b": 0.9}) == {"a": 0.5, "b": 0.9, "c": 0.72}
    with pytest.raises(HeadError, match="unknown labels"):
        merge_thresholds(head, {"neg": 0.5})
    with pytest.raises(HeadError, match="strictly between"):
        merge_thresholds(head, {"a": 1.5})


# -- a feature with weights of its own: the hashed n-gram model ---------------------------------------------------
NGRAMS = FeatureSpec("ngrams", 3, {"labels": ["a", "b", "c"], "n_features": 32, "word": [1, 2], "char": [2, 3]})


def ngram_head(**changes: Any) -> ClassifierHead:
    rng = np.random.default_rng(3)
    head = make_head()
    features = (*head.features, NGRAMS)
    inputs = head.inputs + NGRAMS.size
    fields: dict[str, Any] = {
        "features": features,
        "weights": {"moderation": rng.normal(size=(3, inputs)).astype(np.float32),
                    "sentiment": rng.normal(size=(2, inputs)).astype(np.float32)},
        "feature_weights": {"ngrams": (rng.normal(size=(3, 64)).astype(np.float32),
                                       rng.normal(size=3).astype(np.float32))},
    }
    fields.update(changes)
    return replace(head, **fields)


def test_feature_weights_round_trip(tmp_path: Path) -> None:
    head = ngram_head()
    save_head(head, tmp_path / "h.safetensors")
    loaded = load_head(tmp_path / "h.safetensors")
    assert loaded.features == head.features
    weight, bias = loaded.feature_weights["ngrams"]
    assert np.array_equal(weight, head.feature_weights["ngrams"][0]) and np.array_equal(bias,
                                                                                        head.feature_weights["ngrams"][1])
    from safetensors import safe_open

    with safe_open(str(tmp_path / "h.safetensors"), framework="np") as fh:
        assert {"features/ngrams.weight", "features/ngrams.bias"} <= set(fh.keys())


@pytest.mark.parametrize(("changes", "message"), [
    ({"feature_weights": {}}, "'ngrams' needs its weight and bias tensors"),
    ({"feature_weights": {"ngrams": (np.zeros((3, 32), np.float32), np.zeros(3, np.float32))}},
     r"expected (3, 64) and (3,)"),
    ({"feature_weights": {"ngrams": (np.zeros((3, 64), np.float32), np.zeros(2, np.float32))}},
     r"expected (3, 64) and (3,)"),
    ({"feature_weights": {"ngrams": (np.full((3, 64), np.inf, np.float32), np.zeros(3, np.float32))}}, "finite"),
    ({"feature_weights": {"ngrams": (np.zeros((3, 64), np.float32), np.zeros(3, np.float32)),
                          "profanity": (np.zeros((1, 1), np.float32), np.zeros(1, np.float32))}}, "take none"),
])
def test_inconsistent_feature_weights_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(HeadError) as err:
        ngram_head(**changes)
    assert message in str(err.value)


@pytest.mark.parametrize(("options", "message"), [
    ({"n_features": 8, "word": [1, 2]}, "n_features must be an integer in [16, 4194304]"),
    ({"n_features": 1 << 23, "word": [1, 2]}, "n_features must be an integer"),
    ({"n_features": "many", "word": [1, 2]}, "n_features must be an integer"),
    ({"n_features": 32}, "at least one of ['char', 'word']"),
    ({"n_features": 32, "word": [1, 2], "stem": True}, "at least one of"),
    ({"n_features": 32, "word": [2, 1]}, "'word' must be [shortest, longest]"),
    ({"n_features": 32, "char": [1, 9]}, "'char' must be [shortest, longest]"),
    ({"n_features": 32, "word": [1, True]}, "'word' must be"),
])
def test_bad_ngram_options_are_refused(options: dict[str, Any], message: str) -> None:
    spec = FeatureSpec("ngrams", 3, {"labels": ["a", "b", "c"], **options})
    with pytest.raises(HeadError) as err:
        ngram_head(features=(*make_head().features, spec))
    assert message in str(err.value)


def test_a_file_without_its_feature_tensors_is_refused(tmp_path: Path) -> None:
    head = ngram_head()
    save_head(head, tmp_path / "ok.safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ok.safetensors"), framework="np") as fh:
        metadata = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys() if not k.startswith("features/")}  # noqa: SIM118
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=metadata)
    with pytest.raises(HeadError, match=r"features/ngrams\.bias"):
        load_head(tmp_path / "bad.safetensors")
