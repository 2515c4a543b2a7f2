"""The ``ngrams`` feature's own model: one logistic regression per label over hashed word and character n-grams
(``engines.features.ngram_matrix``), stacked under the head.

Stacking without leaking: the head learns from the n-gram logits of its training rows, so those must be what the
n-gram model says of texts it has not seen, as at serving. Each training row's logits therefore come from the
model fitted on the other folds (out-of-fold); the model shipped in the head file is fitted on all training rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mistral_gateway.engines.features import ngram_matrix
from mistral_gateway.engines.head_format import FeatureSpec

__all__ = ["NGRAM_C", "NGRAM_OPTIONS", "FittedNgrams", "fit_ngrams"]

# Chosen by 5-fold cross-validation on the train split (README "Moderation model")
NGRAM_OPTIONS: Mapping[str, Any] = {"n_features": 1 << 17, "word": [1, 2], "char": [2, 5]}
NGRAM_C = 10.0


@dataclass(frozen=True, slots=True)
class FittedNgrams:
    spec: FeatureSpec
    weight: np.ndarray  # (labels, columns) float32
    bias: np.ndarray  # (labels,) float32
    oof: np.ndarray  # (rows, labels) out-of-fold logits of the training rows


def fit_ngrams(texts: Sequence[str], y: np.ndarray, labels: Sequence[str], *, seed: int, folds: int,
               options: Mapping[str, Any] = NGRAM_OPTIONS, c: float = NGRAM_C) -> FittedNgrams:
    from sklearn.model_selection import KFold

    x = ngram_matrix(texts, options)
    y = y.astype(bool)
    oof = np.zeros(y.shape, np.float32)
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(x):
        weight, bias = _fit(x[train], y[train], c, seed)
        oof[test] = x[test] @ weight.T + bias
    weight, bias = _fit(x, y, c, seed)
    spec = FeatureSpec("ngrams", len(labels), {"labels": list(labels), **options})
    return FittedNgrams(spec, weight, bias, oof)


def _fit(x: Any, y: np.ndarray, c: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    weights, biases = [], []
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore")  # ConvergenceWarning: liblinear's tolerance, not its iterations, bounds it
        for j in range(y.shape[1]):
            model = LogisticRegression(C=c, solver="liblinear", max_iter=1000, random_state=seed).fit(x, y[:, j])
            weights.append(model.coef_[0])
            biases.append(model.intercept_[0])
    return np.asarray(weights, np.float32), np.asarray(biases, np.float32)
