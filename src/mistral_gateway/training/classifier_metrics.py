"""Validation metrics of a classifier head, per target: accuracy and macro F1 for a single-label target (its
labels' argmax), micro and macro F1 for a multi-label one (each label at its threshold), and the mean loss the fit
minimises (cross-entropy, or binary cross-entropy per label). Macro averages run over the labels that occur in the
truth or the predictions: a label nobody used neither helps nor hurts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["multi_label_metrics", "single_label_metrics"]

_EPS = 1e-7


def single_label_metrics(scores: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """``scores`` (rows, labels) summing to 1 per row; ``truth`` (rows,) label indexes."""
    pred = scores.argmax(axis=1)
    f1s = [_f1(pred == j, truth == j) for j in range(scores.shape[1]) if (pred == j).any() or (truth == j).any()]
    picked = scores[np.arange(len(truth)), truth]
    return {"valid_loss": _round(-np.log(np.clip(picked, _EPS, 1.0)).mean()),
            "valid_accuracy": _round((pred == truth).mean()),
            "valid_macro_f1": _round(np.mean(f1s) if f1s else 1.0)}


def multi_label_metrics(scores: np.ndarray, truth: np.ndarray, thresholds: Sequence[float]) -> dict[str, float]:
    """``scores`` and ``truth`` (rows, labels), each label's decision point in ``thresholds``."""
    truth = truth.astype(bool)
    pred = scores >= np.asarray(thresholds)[None, :]
    f1s = [_f1(pred[:, j], truth[:, j]) for j in range(truth.shape[1]) if pred[:, j].any() or truth[:, j].any()]
    clipped = np.clip(scores, _EPS, 1.0 - _EPS)
    loss = -(truth * np.log(clipped) + ~truth * np.log(1.0 - clipped)).mean()
    return {"valid_loss": _round(loss),
            "valid_micro_f1": _round(_f1(pred.ravel(), truth.ravel()) if pred.any() or truth.any() else 1.0),
            "valid_macro_f1": _round(np.mean(f1s) if f1s else 1.0)}


def _f1(pred: np.ndarray, truth: np.ndarray) -> float:
    denominator = int(pred.sum()) + int(truth.sum())
    return 2 * int((pred & truth).sum()) / denominator if denominator else 0.0


def _round(value: float) -> float:
    return round(float(value), 4)
