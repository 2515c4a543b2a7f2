"""The trainer engines' contract without training: the local trainer's run state read from a run directory (as after
a server restart), and the deterministic fake the jobs API is unit-tested with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mistral_gateway.engines.base import (
    ClassifierTargetSpec,
    ClassifierTrainingSpec,
    EngineBusy,
    TrainingEvent,
    TrainingHandle,
    TrainingSpec,
)
from mistral_gateway.engines.fake import FakeClassifierTrainer, FakeTrainer
from mistral_gateway.engines.trainer import LocalTrainer


def run_dir_with(tmp_path: Path, *lines: dict) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "progress.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run


def test_state_comes_from_the_terminal_line(tmp_path: Path) -> None:
    run = run_dir_with(tmp_path, {"kind": "started", "total_steps": 2},
                       {"kind": "checkpoint", "step": 2, "train_loss": 0.5},
                       {"kind": "succeeded", "step": 2, "adapter": "/x/adapter.gguf"})
    progress = LocalTrainer().progress(TrainingHandle(str(run), pid=os.getpid()))
    assert (progress.state, progress.total_steps, progress.adapter) == ("succeeded", 2, "/x/adapter.gguf")
    assert progress.events[0] == TrainingEvent("checkpoint", 2, train_loss=0.5)


def test_a_worker_gone_without_a_last_word_crashed_unless_it_was_asked_to_stop(tmp_path: Path) -> None:
    run = run_dir_with(tmp_path, {"kind": "started", "total_steps": 9}, {"kind": "step", "step": 1})
    # our own pid is alive but is not a worker on this run directory (pid reuse must not look like a live run)
    handle = TrainingHandle(str(run), pid=os.getpid())
    trainer = LocalTrainer(grace=0.0)
    assert trainer.progress(handle).state == "crashed"
    trainer.cancel(handle)
    assert (run / "stop").exists()
    assert trainer.progress(handle).state == "cancelled"


def spec(tmp_path: Path, **fields) -> TrainingSpec:
    return TrainingSpec(base_gguf="base.gguf", training_files=("t.jsonl",), run_dir=str(tmp_path / "run"),
                        cache_dir=str(tmp_path / "cache"), **fields)


def test_fake_trainer_steps_checkpoints_and_succeeds(tmp_path: Path) -> None:
    trainer = FakeTrainer()
    handle = trainer.start(spec(tmp_path, training_steps=4, checkpoint_every=2, validation_files=("v.jsonl",)))
    states = [trainer.progress(handle).state for _ in range(4)]
    assert states == ["running", "running", "running", "succeeded"]
    done = trainer.progress(handle)
    assert done.adapter == f"{handle.run_dir}/adapter.gguf" and done.total_steps == 4
    checkpoints = [e for e in done.events if e.kind == "checkpoint"]
    assert [(c.step, c.valid_loss) for c in checkpoints] == [(2, 1.25), (4, 0.625)]
    assert [e.kind for e in done.events].count("step") == 4 and done.events[-1].kind == "succeeded"


def test_fake_trainer_cancel_failure_and_resume_after_a_crash(tmp_path: Path) -> None:
    trainer = FakeTrainer()
    handle = trainer.start(spec(tmp_path, training_steps=10, checkpoint_every=3))
    for _ in range(4):
        trainer.progress(handle)
    trainer.crash(handle)
    assert trainer.progress(handle).state == "crashed"
    again = trainer.start(spec(tmp_path, training_steps=10, checkpoint_every=3))
    assert trainer.progress(again).events[-1] == TrainingEvent("step", 4, train_loss=0.5)  # from checkpoint 3
    trainer.cancel(again)
    assert trainer.progress(again).state == "cancelled"
    failing = FakeTrainer(fail_at=2)
    handle = failing.start(spec(tmp_path, training_steps=5))
    assert [failing.progress(handle).state for _ in range(2)] == ["running", "failed"]
    assert failing.progress(handle).events[-1].message == "fake failure"


def test_a_worker_left_by_an_earlier_server_counts_as_running_and_blocks_a_second_start(tmp_path: Path) -> None:
    run = run_dir_with(tmp_path, {"kind": "started", "total_steps": 9})
    # a stand-in whose command line names the worker module and the run directory, as a real worker's does
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                 "mistral_gateway.training.lora_worker", str(run)])
    try:
        while b"lora_worker" not in Path(f"/proc/{stand_in.pid}/cmdline").read_bytes():
            time.sleep(0.01)  # until it has exec'd (a forked child shows the parent's command line before)
        (run / "worker.pid").write_text(f"{stand_in.pid}\n")
        trainer = LocalTrainer()
        assert trainer.progress(TrainingHandle(str(run), pid=stand_in.pid)).state == "running"
        with pytest.raises(EngineBusy, match="already active"):
            trainer.start(spec(tmp_path))
    finally:
        stand_in.kill()
        stand_in.wait()
    assert LocalTrainer().progress(TrainingHandle(str(run), pid=stand_in.pid)).state == "crashed"


def test_a_worker_that_does_not_stop_by_itself_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    """E.g. a worker still loading the base (it checks the stop request only between steps)."""
    stubborn = tmp_path / "python"
    stubborn.write_text("#!/bin/sh\ntrap '' TERM\nexec sleep 120\n")  # a stand-in interpreter that never trains
    stubborn.chmod(0o755)
    trainer = LocalTrainer(grace=0.2, python=str(stubborn))
    handle = trainer.start(spec(tmp_path, training_steps=3))
    assert trainer.progress(handle).state == "running"
    trainer.cancel(handle)
    assert trainer.wait(handle) == -9  # SIGKILL
    progress = trainer.progress(handle)
    assert progress.state == "cancelled" and progress.events == ()
    assert json.loads((tmp_path / "run" / "spec.json").read_text())["training_steps"] == 3


def classifier_spec(tmp_path: Path, **fields: Any) -> ClassifierTrainingSpec:
    targets = (ClassifierTargetSpec("sentiment", ("pos", "neg")), ClassifierTargetSpec("topic", ("a", "b"), True))
    return ClassifierTrainingSpec(encoder="mistral-embed", training_files=("t.jsonl",), targets=targets,
                                  run_dir=str(tmp_path / "crun"), **fields)


def test_fake_classifier_trainer_reports_metrics_per_target_and_names_a_head(tmp_path: Path) -> None:
    trainer = FakeClassifierTrainer()
    handle = trainer.start(classifier_spec(tmp_path, validation_files=("v.jsonl",)))
    assert [trainer.progress(handle).state for _ in range(4)] == ["running"] * 3 + ["succeeded"]
    done = trainer.progress(handle)
    assert done.adapter == f"{handle.run_dir}/head.bin" and done.total_steps == 4
    checkpoints = [e for e in done.events if e.kind == "checkpoint"]
    assert [c.step for c in checkpoints] == [2, 4]
    assert set(checkpoints[-1].metrics or {}) == {"sentiment", "topic"}
    failing = FakeClassifierTrainer(fail_at=1)
    handle = failing.start(classifier_spec(tmp_path))
    assert failing.progress(handle).state == "failed"
