"""One classifier training run, inside the worker process (``training.classifier_worker``) or called directly
(tests, the benchmark): read the lines, encode them (cached, ``training.classifier_features``), fit the head
(``training.classifier_fit``) with checkpoints carrying per-target validation metrics, and write the head file.

A checkpoint saves the fit's state (``fit-state.npz``, keyed by a fingerprint of the data, the encoder and the
plan), so a run started again after a crash re-reads its cached embeddings and continues from its last checkpoint;
with different data or hyperparameters it starts over. A stop request ends it at the next step or encoder batch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mistral_gateway.engines.base import ClassifierTrainingSpec, EmbeddingEngine
from mistral_gateway.engines.head_format import ClassifierHead, EncoderInfo
from mistral_gateway.training.classifier_features import ReadLines, encode_cached, read_lines
from mistral_gateway.training.classifier_fit import HeadFit, TargetRows, plan_fit, target_rows
from mistral_gateway.training.classifier_head import THRESHOLD, build_head, check_targets, write_head
from mistral_gateway.training.classifier_metrics import multi_label_metrics, single_label_metrics
from mistral_gateway.training.progress import ProgressWriter
from mistral_gateway.training.worker_main import Stopped

__all__ = ["CHECKPOINTS", "HEAD_NAME", "STATE_NAME", "run", "validate"]

HEAD_NAME = "head.safetensors"
STATE_NAME = "fit-state.npz"
CHECKPOINTS = 10  # per run: each scores the validation lines (cheap: a matrix product)
_STEP_LINES = 100  # at most this many step lines per run in progress.jsonl
_SKIPPED_SHOWN = 5  # reasons of skipped lines in the started line ("file:line: why")
PROBE_TEXT = "mistral-gateway classifier head probe: the encoder must embed this the same way."
PROBE_VALUES = 8


async def run(spec: ClassifierTrainingSpec, encoder: EmbeddingEngine, encoder_id: str, progress: ProgressWriter,
              stop: Callable[[], bool]) -> tuple[Path, int]:
    """Trains to the end; returns the head file and the step count. Raises Stopped when ``stop()`` turns true,
    ValueError when the data cannot train a head."""
    began = time.monotonic()
    run_dir = Path(spec.run_dir)
    check_targets(spec.targets)
    train, valid = read_lines(spec.training_files, spec.targets), read_lines(spec.validation_files, spec.targets)
    rows = target_rows(train.examples, spec.targets)
    empty = [r.target.name for r in rows if not len(r.rows)]
    if empty:
        raise ValueError(f"no training line labels the target(s) {', '.join(empty)}")
    plan = plan_fit(spec, max(len(r.rows) for r in rows))
    fingerprint = _fingerprint(spec, encoder_id, train, asdict(plan))
    state = _read_state(run_dir / STATE_NAME, fingerprint)
    progress.write("started", total_steps=plan.total_steps, step=int(state["step"]) if state else 0,
                   examples=len(train.examples), valid_examples=len(valid.examples),
                   skipped_lines=len(train.skipped) + len(valid.skipped),
                   skipped=(train.skipped + valid.skipped)[:_SKIPPED_SHOWN])
    cache = run_dir / "features"
    x = await encode_cached(encoder, encoder_id, [e.text for e in train.examples], cache, stop)
    x_valid = await encode_cached(encoder, encoder_id, [e.text for e in valid.examples], cache, stop)
    probe = (await encoder.embed([PROBE_TEXT])).vectors[0][:PROBE_VALUES]
    info = EncoderInfo(encoder_id, encoder.dimensions, encoder.max_tokens, PROBE_TEXT,
                       tuple(round(float(v), 6) for v in probe))
    encoded = time.monotonic()
    fit = HeadFit(x, rows, plan)
    if state is not None:
        fit.load_state({k: v for k, v in state.items() if k != "fingerprint"})
    valid_rows = target_rows(valid.examples, spec.targets)
    every = max(1, math.ceil(plan.total_steps / CHECKPOINTS))
    log_every = max(1, math.ceil(plan.total_steps / _STEP_LINES))
    losses: list[float] = []
    checkpoint_losses: list[float] = []
    while fit.step < plan.total_steps:
        if stop():
            raise Stopped(fit.step)
        losses.append(fit.train_step())
        step = fit.step
        if step % log_every == 0 or step == plan.total_steps:
            progress.write("step", step=step, train_loss=_mean(losses), lr=plan.rate(step - 1))
            checkpoint_losses += losses
            losses = []
        if step % every == 0 or step == plan.total_steps:
            head = build_head(info, spec.targets, fit.weights())
            metrics = validate(head, x_valid, valid_rows)
            _write_state(run_dir / STATE_NAME, {**fit.state(), "fingerprint": np.array(fingerprint)})
            progress.write("checkpoint", step=step, train_loss=_mean(checkpoint_losses), metrics=metrics or None,
                           valid_loss=_mean([m["valid_loss"] for m in metrics.values()]))
            checkpoint_losses = []
    weights = fit.weights()
    metrics = validate(build_head(info, spec.targets, weights), x_valid, valid_rows)
    training = {"tool": "mistral-gateway classifier fine-tuning", "encoder": encoder_id, "seed": spec.seed,
                "train_examples": len(train.examples), "valid_examples": len(valid.examples),
                "skipped_lines": len(train.skipped) + len(valid.skipped), "plan": asdict(plan),
                "model": "one linear layer per target over the standardised embedding (folded in); softmax for "
                         f"single-label targets, logistic per label for multi-label ones (threshold {THRESHOLD})",
                "valid_metrics": metrics, "encode_seconds": round(encoded - began, 2),
                "fit_seconds": round(time.monotonic() - encoded, 2)}
    path = run_dir / HEAD_NAME
    write_head(build_head(info, spec.targets, weights, training), path)
    return path, plan.total_steps


def validate(head: ClassifierHead, x: np.ndarray, rows: Sequence[TargetRows]) -> dict[str, dict[str, float]]:
    """Per target that has validation lines: its metrics (``training.classifier_metrics``) scored by ``head``."""
    out = {}
    for r in rows:
        if not len(r.rows):
            continue
        scores = head.scores(x[r.rows])[r.target.name]
        if r.target.multi_label:
            out[r.target.name] = multi_label_metrics(scores, r.truth, [head.thresholds[label]
                                                                        for label in r.target.labels])
        else:
            out[r.target.name] = single_label_metrics(scores, r.truth)
    return out


def _fingerprint(spec: ClassifierTrainingSpec, encoder_id: str, train: ReadLines, plan: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps([encoder_id, plan, [asdict(t) for t in spec.targets]]).encode())
    for e in train.examples:
        digest.update(json.dumps([e.text, e.labels], sort_keys=True).encode() + b"\n")
    return digest.hexdigest()


def _read_state(path: Path, fingerprint: str) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            state = {k: data[k] for k in data.files}
    except (OSError, ValueError):
        return None
    return state if str(state.get("fingerprint")) == fingerprint else None


def _write_state(path: Path, state: dict[str, np.ndarray]) -> None:
    scratch = path.with_name(path.name + ".tmp")
    with scratch.open("wb") as fh:
        np.savez(fh, **state)
    os.replace(scratch, path)  # complete or absent: a kill -9 mid-save leaves the previous checkpoint


def _mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return round(float(np.mean(finite)), 6) if finite else None
