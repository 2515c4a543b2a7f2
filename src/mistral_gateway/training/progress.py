"""The progress channel between a training worker and its engine: one JSON object a line in ``progress.jsonl``.

The worker only appends (flushed after each line); the reader takes the complete lines and ignores a torn last one, so
reading while the worker writes, or after a ``kill -9`` mid-line, is safe. Light on purpose: no torch here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import IO, Any

from mistral_gateway.engines.base import TrainingEvent

__all__ = ["TERMINAL", "ProgressLog", "ProgressWriter", "read_progress"]

TERMINAL = ("succeeded", "cancelled", "failed")
_METRICS = ("train_loss", "valid_loss", "valid_mean_token_accuracy")


class ProgressWriter:
    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def write(self, kind: str, **fields: Any) -> None:
        self._file.write(json.dumps({"kind": kind, **fields}, allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class ProgressLog:
    """What a progress file says so far."""

    def __init__(self) -> None:
        self.total_steps: int | None = None
        self.events: list[TrainingEvent] = []
        self.terminal: TrainingEvent | None = None
        self.adapter: str | None = None


def read_progress(path: Path) -> ProgressLog:
    log = ProgressLog()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return log
    lines = text.split("\n")[:-1]  # the part after the last newline is a line still being written (or torn)
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or not isinstance(record.get("kind"), str):
            continue
        _apply(log, record)
    return log


def _apply(log: ProgressLog, record: dict[str, Any]) -> None:
    kind = record["kind"]
    if kind == "started":
        log.total_steps = _int(record.get("total_steps"))
        log.terminal = None  # a resumed run starts over from a crash (a terminal line never precedes a start)
        return
    event = TrainingEvent(kind=kind, step=_int(record.get("step")) or 0,
                          message=record.get("message") if isinstance(record.get("message"), str) else None,
                          metrics=_metrics(record.get("metrics")),
                          **{name: _float(record.get(name)) for name in _METRICS})
    log.events.append(event)
    if kind in TERMINAL:
        log.terminal = event
        adapter = record.get("adapter")
        log.adapter = adapter if kind == "succeeded" and isinstance(adapter, str) else None


def _metrics(value: Any) -> dict[str, Any] | None:
    """Per-target metrics (classifier checkpoints): target -> metric name -> a finite number; anything else is
    dropped, as for the other metrics."""
    if not isinstance(value, dict):
        return None
    out = {target: {name: number for name, raw in values.items() if (number := _float(raw)) is not None}
           for target, values in value.items() if isinstance(target, str) and isinstance(values, dict)}
    return out or None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
