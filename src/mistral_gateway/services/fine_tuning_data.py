"""Training lines checked before a job trains, and the estimates a dry run (and every job's ``metadata``) shows.

Every line of every training and validation file is checked the way the trainer will read it: completion lines with
``training.lora_data.encode_line`` on the base model's own tokenizer (a line with nothing to learn is bad too: the
trainer would silently drop it), classifier lines with ``training.classifier_data.parse_line``. Good lines are
copied into the run directory, so the trainer reads exactly what was validated (bad lines skipped up to
``invalid_sample_skip_percentage``) and a file deleted after validation does not break the run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from mistral_gateway.engines.base import ClassifierTargetSpec
from mistral_gateway.training.classifier_data import parse_line
from mistral_gateway.training.lora_data import IGNORE, encode_line

__all__ = ["BATCH_SIZE", "CLASSIFIER_BATCH_SIZE", "DEFAULT_SEQ_LEN", "MAX_REPORTED", "SECONDS_PER_STEP_PER_GB",
           "BadLine", "Checked", "SourceFile", "check_files", "classifier_checker", "completion_checker", "estimate"]

MAX_REPORTED = 1000  # bad lines named one by one in a job's events; beyond that they are counted
MAX_ERROR_CHARS = 300
BATCH_SIZE = 4  # TrainingSpec's default batch (lines per LoRA step)
DEFAULT_SEQ_LEN = 128  # TrainingSpec's default, used when a job gives no seq_len
CLASSIFIER_BATCH_SIZE = 32  # lines per step of the classifier trainer
# Measured (docs/training.md, a quiet 2-core EPYC, 1 thread, batch 4 x 128 tokens): SmolLM2-135M Q8_0 (0.145 GB)
# ~2.5 s a step, Qwen2.5-Coder-0.5B Q4_K_M (0.49 GB) ~8 s: about 17 s per step per GB of base GGUF, scaled by the
# step's tokens / 512. A busy machine is slower (4.8-26 s measured under load).
SECONDS_PER_STEP_PER_GB = 17.0
SECONDS_PER_CLASSIFIER_STEP = 0.05  # a head step over cached encoder features; the encoding dominates (below)
ENCODER_TOKENS_PER_SECOND = 2000.0  # all-MiniLM-L6-v2 on one CPU core, order of magnitude

Checker = Callable[[bytes], int]  # a line -> its tokens; ValueError (or TypeError, KeyError) says why it is bad


@dataclass(frozen=True, slots=True)
class SourceFile:
    file_id: str
    filename: str
    path: Path


@dataclass(frozen=True, slots=True)
class BadLine:
    file_id: str
    filename: str
    line: int
    error: str


@dataclass
class Checked:
    lines: int = 0  # good lines
    tokens: int = 0  # of the good lines
    bad_count: int = 0
    bad: list[BadLine] = field(default_factory=list)  # the first MAX_REPORTED
    outputs: list[Path] = field(default_factory=list)  # the good lines' copies

    @property
    def total(self) -> int:
        return self.lines + self.bad_count


def check_files(files: Sequence[SourceFile], check: Checker, out_dir: Path | None = None,
                prefix: str = "train") -> Checked:
    """Check every non-blank line; with ``out_dir``, copy the good ones to ``<out_dir>/<prefix>-<n>.jsonl``."""
    result = Checked()
    for n, source in enumerate(files):
        out = None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            result.outputs.append(out_dir / f"{prefix}-{n}.jsonl")
            out = result.outputs[-1].open("wb")
        try:
            for number, raw in _lines(source.path):
                try:
                    tokens = check(raw)
                except (ValueError, TypeError, KeyError) as exc:
                    result.bad_count += 1
                    if len(result.bad) < MAX_REPORTED:
                        result.bad.append(BadLine(source.file_id, source.filename, number,
                                                  (str(exc) or type(exc).__name__)[:MAX_ERROR_CHARS]))
                    continue
                result.lines += 1
                result.tokens += tokens
                if out is not None:
                    out.write(raw.rstrip(b"\r\n") + b"\n")
        finally:
            if out is not None:
                out.close()
    return result


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if raw.strip():
                yield number, raw


def _object(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("a line must be a JSON object")
    return data


def completion_checker(tokenizer: Any, seq_len: int) -> Checker:
    def check(raw: bytes) -> int:
        example = encode_line(_object(raw), tokenizer, seq_len)
        if not any(label != IGNORE for label in example.labels[1:]):
            raise ValueError(f"nothing to learn: no assistant tokens within the first {seq_len} tokens")
        return len(example.input_ids)

    return check


def classifier_checker(targets: Sequence[ClassifierTargetSpec]) -> Checker:
    def check(raw: bytes) -> int:
        return max(1, len(parse_line(raw, targets).text.split()))  # words: the encoder's tokens, roughly

    return check


def estimate(job_type: str, hp: dict[str, Any], checked: Checked, base_bytes: int | None,
             now: int) -> dict[str, Any]:
    """The spec's estimate fields (LegacyJobMetadataOut without ``details``): steps from epochs (or the reverse),
    tokens from the checked lines, a duration from the measured constants above; cost 0 (local)."""
    batch = CLASSIFIER_BATCH_SIZE if job_type == "classifier" else BATCH_SIZE
    lines = max(1, checked.lines)
    per_line = checked.tokens / lines
    if hp.get("training_steps"):
        steps = int(hp["training_steps"])
        epochs = steps * batch / lines
    else:
        epochs = float(hp.get("epochs") or 1.0)
        steps = max(1, math.ceil(epochs * lines / batch))
    per_step = max(1, round(min(batch, lines) * per_line))
    if job_type == "classifier":
        seconds = steps * SECONDS_PER_CLASSIFIER_STEP + checked.tokens / ENCODER_TOKENS_PER_SECOND
    else:
        seconds = steps * SECONDS_PER_STEP_PER_GB * (base_bytes or 0) / 1e9 * max(per_step, 1) / 512
    return {"expected_duration_seconds": max(1, round(seconds)), "cost": 0.0, "cost_currency": "EUR",
            "train_tokens_per_step": per_step, "train_tokens": per_step * steps, "data_tokens": checked.tokens,
            "estimated_start_time": now, "epochs": round(epochs, 4), "training_steps": steps}
