"""Fitting a multi-label head and measuring it (scikit-learn, fixed seeds: the same data gives the same head on the
same machine, up to float summation order).

The head: features standardised on the training rows, one hidden ReLU layer shared by all labels, one logistic
output per label (scikit-learn's ``MLPClassifier`` on a multi-label target, L2 penalty ``alpha``). The scaler is
folded into the hidden layer, so the head file holds plain ``relu(W1 x + b1)`` then ``w . h + b`` per label.
Thresholds: per label, the F1-maximising one on out-of-fold probabilities of the training rows (k-fold cross-
validation); held-out rows are never seen here.

``seeds`` > 1 fits that many networks (seeds ``seed``, ``seed + 1``...) and averages their logits, which is again
one hidden layer: the hidden units side by side, each network's output weights divided by ``seeds``.

Why not one logistic regression per label: measured by 3-fold cross-validation on the training split (README
"Moderation model"), the shared hidden layer scored macro F1 0.864 against 0.851 for the best logistic regression.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ALPHA", "FOLDS", "HIDDEN", "SEEDS", "FittedHead", "best_threshold", "fit_head", "metrics"]

HIDDEN = 64
ALPHA = 1.0
FOLDS = 5
MAX_ITER = 200
SEEDS = 3
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.01), 2)


@dataclass(frozen=True, slots=True)
class FittedHead:
    hidden_weight: np.ndarray  # (H, inputs), over raw (unscaled) features
    hidden_bias: np.ndarray  # (H,)
    weight: np.ndarray  # (labels, H)
    bias: np.ndarray  # (labels,)
    thresholds: list[float]
    cv_f1: list[float]  # out-of-fold F1 per label at its threshold (training rows only)


def fit_head(x: np.ndarray, y: np.ndarray, *, seed: int, hidden: int = HIDDEN, alpha: float = ALPHA,
             folds: int = FOLDS, max_iter: int = MAX_ITER, seeds: int = SEEDS) -> FittedHead:
    from sklearn.model_selection import KFold

    y = y.astype(bool)
    oof = np.zeros(y.shape)
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(x):
        oof[test] = _predict(_ensemble(x[train], y[train], hidden, alpha, seed, seeds, max_iter), x[test])
    chosen = [best_threshold(oof[:, j], y[:, j]) for j in range(y.shape[1])]
    (w1, b1), (w2, b2) = _ensemble(x, y, hidden, alpha, seed, seeds, max_iter)
    return FittedHead(w1, b1, w2, b2, [t for t, _ in chosen], [f for _, f in chosen])


def best_threshold(scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 over a fixed grid; ties go to the threshold nearest 0.5."""
    y = y.astype(bool)
    best = (0.5, -1.0)
    for t in sorted(THRESHOLDS, key=lambda v: abs(v - 0.5)):
        f1 = _f1(scores >= t, y)
        if f1 > best[1] + 1e-12:
            best = (float(t), f1)
    return best


def metrics(scores: np.ndarray, y: np.ndarray, thresholds: Sequence[float], labels: Sequence[str]) -> dict[str, object]:
    """Per-label precision, recall, F1 and support at ``thresholds``, plus the macro F1."""
    out: dict[str, object] = {}
    for j, label in enumerate(labels):
        pred, truth = scores[:, j] >= thresholds[j], y[:, j].astype(bool)
        tp = int((pred & truth).sum())
        precision = tp / int(pred.sum()) if pred.any() else 0.0
        recall = tp / int(truth.sum()) if truth.any() else 0.0
        out[label] = {"precision": round(precision, 4), "recall": round(recall, 4),
                      "f1": round(_f1(pred, truth), 4), "support": int(truth.sum())}
    out["macro_f1"] = round(float(np.mean([v["f1"] for v in out.values() if isinstance(v, dict)])), 4)
    return out


Layers = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _ensemble(x: np.ndarray, y: np.ndarray, hidden: int, alpha: float, seed: int, seeds: int, max_iter: int
              ) -> Layers:
    """``seeds`` networks as one: their mean logit is the output of the concatenated hidden layers."""
    nets = [_fit(x, y, hidden, alpha, seed + i, max_iter) for i in range(seeds)]
    if seeds == 1:
        return nets[0]
    return ((np.concatenate([w1 for (w1, _), _ in nets]), np.concatenate([b1 for (_, b1), _ in nets])),
            (np.concatenate([w2 for _, (w2, _) in nets], axis=1) / np.float32(seeds),
             np.mean([b2 for _, (_, b2) in nets], axis=0).astype(np.float32)))


def _fit(x: np.ndarray, y: np.ndarray, hidden: int, alpha: float, seed: int, max_iter: int) -> Layers:
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    mean = x.mean(axis=0, dtype=np.float64)
    scale = x.std(axis=0, dtype=np.float64)
    scale[scale < 1e-8] = 1.0  # a constant feature (e.g. an entity type the data never shows)
    model = MLPClassifier((hidden,), alpha=alpha, max_iter=max_iter, random_state=seed)
    # one BLAS thread: small matrices gain nothing from more, and a fixed summation order keeps fits reproducible
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter: the penalty, not the epochs, bounds it
        model.fit((x - mean) / scale, y)
    w1 = (model.coefs_[0] / scale[:, None]).T  # (H, inputs) over raw features
    b1 = model.intercepts_[0] - w1 @ mean
    return (w1.astype(np.float32), b1.astype(np.float32)), (model.coefs_[1].T.astype(np.float32),
                                                             model.intercepts_[1].astype(np.float32))


def _predict(layers: Layers, x: np.ndarray) -> np.ndarray:
    (w1, b1), (w2, b2) = layers
    h = np.maximum(x.astype(np.float64) @ w1.T + b1, 0.0)
    return 0.5 * (1.0 + np.tanh(0.5 * (h @ w2.T + b2)))


def _f1(pred: np.ndarray, truth: np.ndarray) -> float:
    denominator = int(pred.sum()) + int(truth.sum())
    return 2 * int((pred & truth).sum()) / denominator if denominator else 0.0
