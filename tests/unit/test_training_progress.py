"""The progress channel: what the worker appends and what the engine reads back, including a torn last line, a
resumed run after a crash, and values JSON cannot carry."""

from __future__ import annotations

import json
from pathlib import Path

from mistral_gateway.engines.base import TrainingEvent
from mistral_gateway.training.progress import ProgressWriter, read_progress


def test_events_metrics_and_the_terminal_line_are_read_back(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    writer = ProgressWriter(path)
    writer.write("started", total_steps=4, step=0)
    writer.write("step", step=1, train_loss=1.5, lr=0.001)
    writer.write("checkpoint", step=2, train_loss=1.25, valid_loss=1.75, valid_mean_token_accuracy=0.5)
    writer.write("succeeded", step=4, adapter="/runs/a/adapter.gguf")
    writer.close()
    log = read_progress(path)
    assert log.total_steps == 4
    assert log.events == [TrainingEvent("step", 1, train_loss=1.5),
                          TrainingEvent("checkpoint", 2, 1.25, 1.75, 0.5),
                          TrainingEvent("succeeded", 4)]
    assert log.terminal == log.events[-1] and log.adapter == "/runs/a/adapter.gguf"


def test_a_torn_last_line_and_garbage_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    path.write_text('{"kind": "started", "total_steps": 9}\n[1]\nnot json\n{"step": 3}\n'
                    '{"kind": "step", "step": 1, "train_loss": "high"}\n{"kind": "step", "step": 2, "train_lo')
    log = read_progress(path)
    assert log.events == [TrainingEvent("step", 1)]  # a metric of the wrong type is absent, not an error
    assert log.terminal is None and log.total_steps == 9


def test_a_resumed_run_clears_the_crashed_attempts_terminal_state(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    lines = [{"kind": "started", "total_steps": 6}, {"kind": "failed", "step": 2, "message": "killed"},
             {"kind": "started", "total_steps": 6, "step": 2}, {"kind": "step", "step": 3, "train_loss": 0.5}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    log = read_progress(path)
    assert log.terminal is None
    assert [e.kind for e in log.events] == ["failed", "step"]  # the history stays
    assert log.events[0].message == "killed"


def test_a_missing_file_is_an_empty_log(tmp_path: Path) -> None:
    log = read_progress(tmp_path / "nothing.jsonl")
    assert (log.events, log.terminal, log.total_steps, log.adapter) == ([], None, None, None)


def test_non_finite_numbers_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    path.write_text('{"kind": "step", "step": 1, "train_loss": NaN, "valid_loss": Infinity, '
                    '"valid_mean_token_accuracy": 1}\n')
    assert read_progress(path).events == [TrainingEvent("step", 1, valid_mean_token_accuracy=1.0)]
