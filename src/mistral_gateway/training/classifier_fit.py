"""Fitting a fine-tuned classifier head: one linear layer per target over the encoder's (standardised) embedding,
trained with AdamW on mini-batches (numpy, deterministic: the batch of each step is drawn from a generator seeded by
the run's seed and the step, so a run resumed from a checkpoint ends exactly where an uninterrupted one would).

A single-label target is a softmax over its labels (cross-entropy: scores spread 1.0 over the labels); a multi-label
target is one logistic output per label (binary cross-entropy: each label scored on its own, decided at 0.5). A line
trains only the targets it labels. Targets share no parameters, so each is its own problem.

Hyperparameters (docs/training.md "Classifier fine-tuning"): ``training_steps`` is the number of AdamW updates;
without it, ``epochs`` passes over the largest target's lines (default ``DEFAULT_EPOCHS``, at least ``MIN_STEPS``);
``learning_rate`` is Mistral's figure, tuned for whole transformers, so the head's peak step size is
``learning_rate * LR_SCALE`` (1e-4 -> 1e-2, which a freshly initialised linear head needs); ``weight_decay``
is AdamW's decoupled decay on the weights (not the biases); ``warmup_fraction`` warms the step size up linearly, then
it decays linearly to a tenth. The standardisation is folded into the weights, so the head file holds plain
``W x + b`` over the raw embedding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mistral_gateway.engines.base import ClassifierTargetSpec, ClassifierTrainingSpec
from mistral_gateway.training.classifier_data import ClassifierExample

__all__ = ["BATCH_SIZE", "DEFAULT_EPOCHS", "LR_SCALE", "MAX_STEPS", "MIN_STEPS", "FitPlan", "HeadFit", "TargetRows",
           "plan_fit", "target_rows"]

BATCH_SIZE = 32
DEFAULT_EPOCHS = 20.0
MIN_STEPS = 300  # without training_steps: small data sets still get enough updates to converge
MAX_STEPS = 20_000  # bounds a run whatever the hyperparameters say (a step is a fraction of a millisecond)
LR_SCALE = 100.0
_BETAS = (0.9, 0.999)
_EPS = 1e-8


@dataclass(frozen=True, slots=True)
class TargetRows:
    """The lines that label ``target``: their example indexes and truth (label indexes for a single-label target,
    a 0/1 matrix rows x labels for a multi-label one)."""

    target: ClassifierTargetSpec
    rows: np.ndarray
    truth: np.ndarray


def target_rows(examples: Sequence[ClassifierExample], targets: Sequence[ClassifierTargetSpec]) -> list[TargetRows]:
    out = []
    for target in targets:
        index = {label: j for j, label in enumerate(target.labels)}
        rows = [i for i, e in enumerate(examples) if target.name in e.labels]
        if target.multi_label:
            truth = np.zeros((len(rows), len(target.labels)), dtype=np.float32)
            for r, i in enumerate(rows):
                truth[r, [index[label] for label in examples[i].labels[target.name]]] = 1.0
        else:
            truth = np.array([index[examples[i].labels[target.name][0]] for i in rows], dtype=np.int64)
        out.append(TargetRows(target, np.array(rows, dtype=np.int64), truth))
    return out


@dataclass(frozen=True, slots=True)
class FitPlan:
    total_steps: int
    batch_size: int
    learning_rate: float  # the peak AdamW step size
    weight_decay: float
    warmup_steps: int
    seed: int

    def rate(self, step: int) -> float:
        """Linear warm-up, then linear decay to a tenth at the last step (as the LoRA trainer)."""
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        return self.learning_rate * (1.0 - 0.9 * (step - self.warmup_steps) / max(1, self.total_steps -
                                                                                   self.warmup_steps))


def plan_fit(spec: ClassifierTrainingSpec, largest_target_rows: int) -> FitPlan:
    per_epoch = math.ceil(max(1, largest_target_rows) / BATCH_SIZE)
    if spec.training_steps is not None:
        total = spec.training_steps
    elif spec.epochs is not None:
        total = math.ceil(spec.epochs * per_epoch)
    else:
        total = max(MIN_STEPS, math.ceil(DEFAULT_EPOCHS * per_epoch))
    total = max(1, min(MAX_STEPS, total))
    return FitPlan(total_steps=total, batch_size=BATCH_SIZE, learning_rate=spec.learning_rate * LR_SCALE,
                   weight_decay=spec.weight_decay, warmup_steps=round(spec.warmup_fraction * total), seed=spec.seed)


class HeadFit:
    """The fit's whole state (weights, AdamW moments, step) over the training features ``x`` (rows, dims)."""

    def __init__(self, x: np.ndarray, targets: Sequence[TargetRows], plan: FitPlan) -> None:
        self.plan = plan
        self.targets = list(targets)
        self.step = 0
        self.mean = x.mean(axis=0, dtype=np.float64)
        scale = x.std(axis=0, dtype=np.float64)
        scale[scale < 1e-8] = 1.0  # a constant dimension
        self.scale = scale
        self._x = (x - self.mean) / self.scale
        dims = x.shape[1]
        self.params: dict[str, np.ndarray] = {}
        for t in self.targets:
            labels = len(t.target.labels)
            for part, shape in (("w", (labels, dims)), ("b", (labels,))):
                for slot in ("", ".m", ".v"):
                    self.params[f"{t.target.name}.{part}{slot}"] = np.zeros(shape)

    def train_step(self) -> float:
        """One AdamW update of every target on a batch of its lines; the batch's mean loss over targets."""
        rng = np.random.default_rng([self.plan.seed, self.step])
        rate = self.plan.rate(self.step)
        self.step += 1
        losses = []
        for t in self.targets:
            if not len(t.rows):
                continue
            pick = rng.choice(len(t.rows), size=min(self.plan.batch_size, len(t.rows)), replace=False)
            x = self._x[t.rows[pick]]
            probs = _probs(x @ self._p(t, "w").T + self._p(t, "b"), t.target.multi_label)
            if t.target.multi_label:
                truth = t.truth[pick]
                clipped = np.clip(probs, 1e-7, 1 - 1e-7)
                losses.append(float(-(truth * np.log(clipped) + (1 - truth) * np.log(1 - clipped)).mean()))
                error = (probs - truth) / truth.shape[1]  # gradient of the mean over labels too
            else:
                truth = np.eye(len(t.target.labels))[t.truth[pick]]
                losses.append(float(-np.log(np.clip((probs * truth).sum(axis=1), 1e-7, 1.0)).mean()))
                error = probs - truth
            error /= len(pick)
            self._adamw(t, "w", error.T @ x, rate, self.plan.weight_decay)
            self._adamw(t, "b", error.sum(axis=0), rate, 0.0)
        return float(np.mean(losses)) if losses else 0.0

    def weights(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Target name -> (labels x dims, labels) over the raw features (the standardisation folded in)."""
        out = {}
        for t in self.targets:
            weight = self._p(t, "w") / self.scale[None, :]
            out[t.target.name] = (weight.astype(np.float32),
                                  (self._p(t, "b") - weight @ self.mean).astype(np.float32))
        return out

    def state(self) -> dict[str, np.ndarray]:
        return {"step": np.array(self.step), **self.params}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if set(state) != {"step", *self.params} or any(state[k].shape != v.shape for k, v in self.params.items()):
            raise ValueError("a checkpoint of another fit")
        self.step = int(state["step"])
        self.params = {k: np.array(state[k], dtype=np.float64) for k in self.params}

    def _p(self, t: TargetRows, part: str) -> np.ndarray:
        return self.params[f"{t.target.name}.{part}"]

    def _adamw(self, t: TargetRows, part: str, grad: np.ndarray, rate: float, decay: float) -> None:
        key = f"{t.target.name}.{part}"
        b1, b2 = _BETAS
        m = self.params[key + ".m"] = b1 * self.params[key + ".m"] + (1 - b1) * grad
        v = self.params[key + ".v"] = b2 * self.params[key + ".v"] + (1 - b2) * grad * grad
        m_hat, v_hat = m / (1 - b1 ** self.step), v / (1 - b2 ** self.step)
        self.params[key] = self.params[key] * (1 - rate * decay) - rate * m_hat / (np.sqrt(v_hat) + _EPS)


def _probs(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    if multi_label:
        return 0.5 * (1.0 + np.tanh(0.5 * logits))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
