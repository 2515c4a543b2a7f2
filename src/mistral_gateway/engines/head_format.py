"""The classifier-head file: one safetensors file = one classifier over a sentence encoder.

Tensors: ``<target>.weight`` (float32, labels x inputs) and ``<target>.bias`` (float32, labels) per target. The
inputs are the features the header lists, concatenated in order (the encoder's embedding first, then extra
features such as presidio entity scores). A target may have one hidden ReLU layer (header ``"hidden": H``):
``<target>.hidden.weight`` (H x inputs) and ``<target>.hidden.bias`` (H), and then its ``weight`` is labels x H.
A feature computed by a model of its own (``ngrams``: a linear model over hashed n-grams) carries it as
``features/<feature>.weight`` (size x columns) and ``features/<feature>.bias`` (size); "/" is never in a target name.
Metadata key ``mistral_gateway.classifier`` holds a JSON header:

    {"format": "mistral-gateway-classifier", "version": 1,
     "encoder": {"model": "sentence-transformers/all-MiniLM-L6-v2", "dimensions": 384, "max_tokens": 256,
                 "probe": {"text": "...", "values": [first dimensions of its embedding]}},   # probe optional
     "features": [{"name": "embedding", "size": 384}, {"name": "presidio", "size": 3, "entities": [...]},
                  {"name": "ngrams", "size": 9, "labels": [...], "n_features": 131072, "word": [1, 2],
                   "char": [2, 5]}, ...],
     "targets": [{"name": "moderation", "labels": [...], "multi_label": true, "hidden": 64}],  # hidden: optional
     "thresholds": {"<label of a multi-label target>": 0.5, ...},
     "training": {"data_sha256": "...", "seed": 0, "heldout": {...}, ...}}                   # free-form provenance

Multi-label targets score each label with a sigmoid, single-label ones with a softmax over their labels. The
moderation model and (later) fine-tuned classifiers write this same format; ``load_head`` validates all of it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mistral_gateway.engines.base import ClassifierTarget

__all__ = ["FORMAT", "HEADER_KEY", "MAX_HEAD_BYTES", "VERSION", "ClassifierHead", "EncoderInfo", "FeatureSpec",
           "HeadError", "load_head", "merge_thresholds", "save_head"]

FORMAT = "mistral-gateway-classifier"
VERSION = 1
HEADER_KEY = "mistral_gateway.classifier"
MAX_HEAD_BYTES = 256 * 1024 * 1024  # far above any head over a sentence encoder; bounds what a bad path reads
MAX_LABELS = 1024
MAX_TARGETS = 64
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}")
# Extra features the engine can compute (engines/features.py), and how many inputs each adds
_SIZED_BY_OPTION = {"presidio": "entities", "ngrams": "labels"}
_FIXED_SIZE = {"profanity": 1}
_WEIGHTED = {"ngrams"}  # features whose head file carries their weights (features/<name>.weight and .bias)
_NGRAM_RANGES = {"word": 4, "char": 8}  # the n-gram kinds an ``ngrams`` feature may use, and their longest n
_MAX_HASH_FEATURES = 1 << 22


class HeadError(ValueError):
    """A head file is missing, malformed or inconsistent (the message says which part and why)."""


@dataclass(frozen=True, slots=True)
class EncoderInfo:
    model: str  # the encoder the head was trained on (its Hugging Face id or catalog name)
    dimensions: int
    max_tokens: int
    probe_text: str | None = None  # a fixed text and the first values of its embedding: proves the encoder matches
    probe_values: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    name: str  # "embedding", "presidio" or "profanity"
    size: int
    options: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"entities": [...]} for presidio


@dataclass(frozen=True, slots=True)
class ClassifierHead:
    encoder: EncoderInfo
    features: tuple[FeatureSpec, ...]
    targets: tuple[ClassifierTarget, ...]
    weights: Mapping[str, np.ndarray]  # target name -> (labels, inputs) float32
    biases: Mapping[str, np.ndarray]  # target name -> (labels,) float32
    thresholds: Mapping[str, float]  # label -> decision point, for every label of the multi-label targets
    training: Mapping[str, Any] = field(default_factory=dict)
    hidden: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # target -> (H x inputs, H)
    feature_weights: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # feature -> (W, b)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def inputs(self) -> int:
        return sum(f.size for f in self.features)

    def scores(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Target name -> (rows, labels) scores in [0, 1] for feature rows ``x`` (rows, inputs)."""
        out = {}
        for target in self.targets:
            rows = x.astype(np.float64)
            if target.name in self.hidden:
                weight, bias = self.hidden[target.name]
                rows = np.maximum(rows @ weight.T.astype(np.float64) + bias, 0.0)
            logits = rows @ self.weights[target.name].T.astype(np.float64) + self.biases[target.name]
            if target.multi_label:
                out[target.name] = 0.5 * (1.0 + np.tanh(0.5 * logits))  # the logistic function, without overflow
            else:
                shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
                out[target.name] = shifted / shifted.sum(axis=1, keepdims=True)
        return out


def save_head(head: ClassifierHead, path: str | Path) -> None:
    from safetensors.numpy import save_file

    tensors = {}
    for target in head.targets:
        tensors[f"{target.name}.weight"] = np.ascontiguousarray(head.weights[target.name], dtype=np.float32)
        tensors[f"{target.name}.bias"] = np.ascontiguousarray(head.biases[target.name], dtype=np.float32)
        if target.name in head.hidden:
            weight, bias = head.hidden[target.name]
            tensors[f"{target.name}.hidden.weight"] = np.ascontiguousarray(weight, dtype=np.float32)
            tensors[f"{target.name}.hidden.bias"] = np.ascontiguousarray(bias, dtype=np.float32)
    for name, (weight, bias) in head.feature_weights.items():
        tensors[f"features/{name}.weight"] = np.ascontiguousarray(weight, dtype=np.float32)
        tensors[f"features/{name}.bias"] = np.ascontiguousarray(bias, dtype=np.float32)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "encoder": {"model": head.encoder.model, "dimensions": head.encoder.dimensions,
                    "max_tokens": head.encoder.max_tokens,
                    **({"probe": {"text": head.encoder.probe_text, "values": list(head.encoder.probe_values)}}
                       if head.encoder.probe_text is not None else {})},
        "features": [{"name": f.name, "size": f.size, **f.options} for f in head.features],
        "targets": [{"name": t.name, "labels": list(t.labels), "multi_label": t.multi_label,
                     **({"hidden": int(head.hidden[t.name][1].shape[0])} if t.name in head.hidden else {})}
                    for t in head.targets],
        "thresholds": dict(head.thresholds),
        "training": dict(head.training),
    }
    save_file(tensors, str(path), metadata={HEADER_KEY: json.dumps(header, sort_keys=True)})


def load_head(path: str | Path) -> ClassifierHead:
    """Read and validate a head file; every problem is a ``HeadError`` naming the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise HeadError(f"classifier head {path}: cannot read it ({exc.strerror or exc})") from exc
    if size > MAX_HEAD_BYTES:
        raise HeadError(f"classifier head {path}: {size} bytes, more than the {MAX_HEAD_BYTES} allowed")
    try:
        return _read(path)
    except HeadError as exc:
        raise HeadError(f"classifier head {path}: {exc}") from None


def merge_thresholds(head: ClassifierHead, overrides: Mapping[str, float]) -> dict[str, float]:
    """The head's default thresholds with ``overrides`` (configuration) on top; unknown labels are refused."""
    unknown = sorted(set(overrides) - set(head.thresholds))
    if unknown:
        raise HeadError(f"thresholds for unknown labels {unknown}; the head's multi-label labels are "
                        f"{sorted(head.thresholds)}")
    merged = {**head.thresholds, **overrides}
    _check_thresholds(merged)
    return merged


# -- reading and validation ---------------------------------------------------------------------------------------
def _read(path: Path) -> ClassifierHead:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as fh:
            metadata = fh.metadata() or {}
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError) as exc:
        raise HeadError(f"not a safetensors file ({exc})") from exc
    raw = metadata.get(HEADER_KEY)
    if raw is None:
        raise HeadError(f"no {HEADER_KEY!r} header in its metadata (not a classifier head)")
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise HeadError(f"its header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise HeadError("its header is not a JSON object")
    if header.get("format") != FORMAT:
        raise HeadError(f"format {header.get('format')!r}, expected {FORMAT!r}")
    if header.get("version") != VERSION:
        raise HeadError(f"format version {header.get('version')!r}; this server reads version {VERSION}")
    raw_targets = _list(header, "targets")
    targets = tuple(_target(t) for t in raw_targets)
    hidden = {t.name: _int(raw.get("hidden"), f"target {t.name!r} hidden size", 1, 65536)
              for t, raw in zip(targets, raw_targets, strict=True) if raw.get("hidden") is not None}
    expected = {f"{t.name}.{part}" for t in targets for part in ("weight", "bias")}
    expected |= {f"{name}.hidden.{part}" for name in hidden for part in ("weight", "bias")}
    features = tuple(_feature(f) for f in _list(header, "features"))
    weighted = [f.name for f in features if f.name in _WEIGHTED]
    expected |= {f"features/{name}.{part}" for name in weighted for part in ("weight", "bias")}
    if set(tensors) != expected:
        raise HeadError(f"tensors {sorted(tensors)} do not match its targets and features (want {sorted(expected)})")
    training = header.get("training", {})
    if not isinstance(training, dict):
        raise HeadError("'training' must be an object")
    thresholds = header.get("thresholds", {})
    if not isinstance(thresholds, dict):
        raise HeadError("'thresholds' must be an object")
    return ClassifierHead(
        encoder=_encoder(header.get("encoder")),
        features=features,
        targets=targets,
        weights={t.name: tensors[f"{t.name}.weight"] for t in targets},
        biases={t.name: tensors[f"{t.name}.bias"] for t in targets},
        thresholds=thresholds,
        training=training,
        hidden={name: (tensors[f"{name}.hidden.weight"], tensors[f"{name}.hidden.bias"]) for name in hidden},
        feature_weights={name: (tensors[f"features/{name}.weight"], tensors[f"features/{name}.bias"])
                         for name in weighted},
    )


def _list(header: dict[str, Any], key: str) -> list[Any]:
    value = header.get(key)
    if not isinstance(value, list) or not value:
        raise HeadError(f"{key!r} must be a non-empty list")
    return value


def _int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise HeadError(f"{what} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _encoder(raw: Any) -> EncoderInfo:
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), str) or not raw["model"]:
        raise HeadError("'encoder' must be an object with a 'model' name")
    probe = raw.get("probe")
    text, values = None, ()
    if probe is not None:
        if not (isinstance(probe, dict) and isinstance(probe.get("text"), str) and isinstance(probe.get("values"), list)
                and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                        for v in probe["values"])):
            raise HeadError("'encoder.probe' must be {'text': str, 'values': [numbers]}")
        text, values = probe["text"], tuple(float(v) for v in probe["values"])
    return EncoderInfo(model=raw["model"], dimensions=_int(raw.get("dimensions"), "encoder.dimensions", 1, 65536),
                       max_tokens=_int(raw.get("max_tokens"), "encoder.max_tokens", 8, 1 << 20),
                       probe_text=text, probe_values=values)


def _feature(raw: Any) -> FeatureSpec:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise HeadError(f"a feature must be an object with a 'name': {raw!r}")
    options = {k: v for k, v in raw.items() if k not in ("name", "size")}
    return FeatureSpec(raw["name"], _int(raw.get("size"), f"feature {raw['name']!r} size", 1, 65536), options)


def _target(raw: Any) -> ClassifierTarget:
    if not isinstance(raw, dict):
        raise HeadError(f"a target must be an object: {raw!r}")
    labels = raw.get("labels")
    multi = raw.get("multi_label", False)
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise HeadError(f"target {raw.get('name')!r}: 'labels' must be a list of strings")
    if not isinstance(multi, bool):
        raise HeadError(f"target {raw.get('name')!r}: 'multi_label' must be true or false")
    return ClassifierTarget(name=raw.get("name"), labels=tuple(labels), multi_label=multi)  # type: ignore[arg-type]


def _check_thresholds(thresholds: Mapping[str, float]) -> None:
    bad = {k: v for k, v in thresholds.items()
           if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1}
    if bad:
        raise HeadError(f"thresholds must be numbers strictly between 0 and 1: {bad}")


def _validate(head: ClassifierHead) -> None:
    """Everything a loaded head must satisfy; ``save_head`` relies on it too (a head that saves, loads)."""
    enc = head.encoder
    names = [f.name for f in head.features]
    if not names or names[0] != "embedding" or head.features[0].size != enc.dimensions:
        raise HeadError(f"the first feature must be the encoder's 'embedding' of size {enc.dimensions}: {names}")
    if len(set(names)) != len(names):
        raise HeadError(f"features repeat: {names}")
    for spec in head.features[1:]:
        _check_feature(spec)
    _check_feature_weights(head)
    if enc.probe_text is not None and not 1 <= len(enc.probe_values) <= enc.dimensions:
        raise HeadError("'encoder.probe.values' must hold 1 to dimensions numbers")
    if not 1 <= len(head.targets) <= MAX_TARGETS:
        raise HeadError(f"a head has 1 to {MAX_TARGETS} targets, not {len(head.targets)}")
    seen: set[str] = set()
    multi_labels: list[str] = []
    for t in head.targets:
        if not isinstance(t.name, str) or not _NAME.fullmatch(t.name) or t.name in seen:
            raise HeadError(f"target names must be unique, 1-64 of [A-Za-z0-9_.:-]: {t.name!r}")
        seen.add(t.name)
        if not 1 <= len(t.labels) <= MAX_LABELS or len(set(t.labels)) != len(t.labels) or not all(
                _NAME.fullmatch(label) for label in t.labels):
            raise HeadError(f"target {t.name!r}: 1 to {MAX_LABELS} unique labels of 1-64 [A-Za-z0-9_.:-]")
        if not t.multi_label and len(t.labels) < 2:
            raise HeadError(f"target {t.name!r}: a single-label target needs at least two labels")
        inputs = head.inputs
        if t.name in head.hidden:
            hw, hb = head.hidden[t.name]
            if not (isinstance(hw, np.ndarray) and isinstance(hb, np.ndarray) and hw.ndim == 2
                    and hw.shape[1] == head.inputs and hb.shape == (hw.shape[0],) and hw.shape[0] >= 1):
                raise HeadError(f"target {t.name!r}: hidden layer shapes {getattr(hw, 'shape', None)}, "
                                f"{getattr(hb, 'shape', None)}; expected (H, {head.inputs}) and (H,)")
            if not (np.isfinite(hw).all() and np.isfinite(hb).all()):
                raise HeadError(f"target {t.name!r}: weights must be finite numbers")
            inputs = hw.shape[0]
        w, b = head.weights.get(t.name), head.biases.get(t.name)
        if not isinstance(w, np.ndarray) or w.shape != (len(t.labels), inputs):
            per = "hidden units" if t.name in head.hidden else "features"
            raise HeadError(f"target {t.name!r}: weight shape {getattr(w, 'shape', None)}, expected "
                            f"{(len(t.labels), inputs)} (labels x {per})")
        if not isinstance(b, np.ndarray) or b.shape != (len(t.labels),):
            raise HeadError(f"target {t.name!r}: bias shape {getattr(b, 'shape', None)}, expected {(len(t.labels),)}")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise HeadError(f"target {t.name!r}: weights must be finite numbers")
        if t.multi_label:
            multi_labels += t.labels
    if set(head.hidden) - seen:
        raise HeadError(f"hidden layers for unknown targets {sorted(set(head.hidden) - seen)}")
    if len(set(multi_labels)) != len(multi_labels):
        raise HeadError("labels of multi-label targets must differ across targets (thresholds are keyed by label)")
    if set(head.thresholds) != set(multi_labels):
        raise HeadError(f"thresholds must name exactly the multi-label targets' labels: missing "
                        f"{sorted(set(multi_labels) - set(head.thresholds))}, unknown "
                        f"{sorted(set(head.thresholds) - set(multi_labels))}")
    _check_thresholds(head.thresholds)


def _check_feature_weights(head: ClassifierHead) -> None:
    """A weighted feature has exactly its (size x columns, size) finite tensors; no other feature has any."""
    specs = {f.name: f for f in head.features}
    unknown = sorted(set(head.feature_weights) - {name for name in specs if name in _WEIGHTED})
    if unknown:
        raise HeadError(f"weights for features that take none: {unknown}")
    for spec in head.features:
        if spec.name not in _WEIGHTED:
            continue
        if spec.name not in head.feature_weights:
            raise HeadError(f"feature {spec.name!r} needs its weight and bias tensors")
        weight, bias = head.feature_weights[spec.name]
        columns = spec.options["n_features"] * sum(kind in spec.options for kind in _NGRAM_RANGES)
        if not (isinstance(weight, np.ndarray) and isinstance(bias, np.ndarray)
                and weight.shape == (spec.size, columns) and bias.shape == (spec.size,)):
            raise HeadError(f"feature {spec.name!r}: weight shape {getattr(weight, 'shape', None)} and bias shape "
                            f"{getattr(bias, 'shape', None)}; expected {(spec.size, columns)} and {(spec.size,)}")
        if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
            raise HeadError(f"feature {spec.name!r}: weights must be finite numbers")


def _check_ngram_options(spec: FeatureSpec) -> None:
    _int(spec.options.get("n_features"), "feature 'ngrams' n_features", 16, _MAX_HASH_FEATURES)
    kinds = [kind for kind in _NGRAM_RANGES if kind in spec.options]
    if not kinds or set(spec.options) - {"labels", "n_features", *_NGRAM_RANGES}:
        raise HeadError(f"feature 'ngrams' takes 'labels', 'n_features' and at least one of {sorted(_NGRAM_RANGES)}; "
                        f"got {sorted(spec.options)}")
    for kind in kinds:
        span = spec.options[kind]
        if not (isinstance(span, list) and len(span) == 2 and all(
                isinstance(n, int) and not isinstance(n, bool) for n in span)
                and 1 <= span[0] <= span[1] <= _NGRAM_RANGES[kind]):
            raise HeadError(f"feature 'ngrams' {kind!r} must be [shortest, longest] with 1 <= shortest <= longest "
                            f"<= {_NGRAM_RANGES[kind]}, got {span!r}")


def _check_feature(spec: FeatureSpec) -> None:
    if spec.name in _FIXED_SIZE:
        if spec.size != _FIXED_SIZE[spec.name]:
            raise HeadError(f"feature {spec.name!r} has size {_FIXED_SIZE[spec.name]}, not {spec.size}")
    elif spec.name in _SIZED_BY_OPTION:
        option = _SIZED_BY_OPTION[spec.name]
        values = spec.options.get(option)
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values) or len(values) != spec.size:
            raise HeadError(f"feature {spec.name!r}: {option!r} must list {spec.size} names (its size)")
        if spec.name == "ngrams":
            _check_ngram_options(spec)
    else:
        known = ", ".join(sorted({"embedding", *_FIXED_SIZE, *_SIZED_BY_OPTION}))
        raise HeadError(f"unknown feature {spec.name!r} (known: {known})")
