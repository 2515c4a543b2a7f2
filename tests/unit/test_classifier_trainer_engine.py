"""The local classifier trainer's worker process over the fake encoder (hash embeddings: the mechanics, not the
learning, which tests/unit/test_classifier_training.py and the real-encoder test cover): a run succeeds with a head
file the format loads, reports checkpoints with per-target metrics, honours cancel, resumes after a crash from its
last checkpoint; bad encoders and targets are refused before any process starts; the service container has one."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import ClassifierTargetSpec, ClassifierTrainingSpec, InvalidInput
from mistral_gateway.engines.classifier_trainer import LocalClassifierTrainer
from mistral_gateway.engines.fake import FakeEmbeddingEngine
from mistral_gateway.engines.head_format import load_head
from mistral_gateway.services.container import build_services
from mistral_gateway.training.classifier_run import HEAD_NAME, run
from mistral_gateway.training.classifier_sample import TARGETS, write_sample
from mistral_gateway.training.progress import ProgressWriter, read_progress


def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", models=[
        ModelEntry(id="enc", aliases=["mistral-embed"], engine="fake", capabilities=[], max_context_length=128),
        ModelEntry(id="chat", engine="fake")])


def spec(tmp_path: Path, **fields: object) -> ClassifierTrainingSpec:
    if not (tmp_path / "train.jsonl").exists():
        write_sample(tmp_path / "train.jsonl", 80, seed=1)
        write_sample(tmp_path / "valid.jsonl", 20, seed=2)
    return replace(ClassifierTrainingSpec(encoder="mistral-embed", training_files=(str(tmp_path / "train.jsonl"),),
                                          targets=TARGETS, run_dir=str(tmp_path / "run"),
                                          validation_files=(str(tmp_path / "valid.jsonl"),)), **fields)


def test_a_run_in_its_worker_process_succeeds_with_a_head_file(tmp_path: Path) -> None:
    trainer = LocalClassifierTrainer(settings(tmp_path), threads=2)
    handle = trainer.start(spec(tmp_path, training_steps=20))
    assert trainer.wait(handle, timeout=120) == 0
    progress = trainer.progress(handle)
    assert (progress.state, progress.total_steps) == ("succeeded", 20)
    assert progress.adapter == str(tmp_path / "run" / HEAD_NAME)
    head = load_head(progress.adapter)
    assert head.encoder.model == "enc" and head.encoder.dimensions == 8  # the catalog id, behind the alias
    checkpoints = [e for e in progress.events if e.kind == "checkpoint"]
    assert [c.step for c in checkpoints] == list(range(2, 21, 2))
    assert set(checkpoints[-1].metrics or {}) == {"topic", "mentions"}
    worker = json.loads((tmp_path / "run" / "worker.json").read_text())
    assert worker["threads"] == 2 and worker["encoder"]["id"] == "enc"


def test_cancel_ends_the_run_as_cancelled(tmp_path: Path) -> None:
    trainer = LocalClassifierTrainer(settings(tmp_path), grace=120.0)  # never killed: it must stop by itself
    handle = trainer.start(spec(tmp_path, training_steps=20_000))
    trainer.cancel(handle)
    assert trainer.wait(handle, timeout=120) == 0  # it stopped by itself, within the grace period
    progress = trainer.progress(handle)
    assert progress.state == "cancelled" and progress.adapter is None
    assert not (tmp_path / "run" / HEAD_NAME).exists()


def test_a_crashed_run_started_again_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    s = spec(tmp_path, training_steps=50)
    (tmp_path / "run").mkdir()
    progress = ProgressWriter(tmp_path / "run" / "progress.jsonl")
    calls = {"n": 0}

    def crash_at_step_37() -> bool:
        calls["n"] += 1
        if calls["n"] > 37 + 4:  # after the 4 encoder batches
            raise SystemExit("killed")  # what a kill -9 leaves: no terminal line
        return False
    with pytest.raises(SystemExit):
        asyncio.run(run(s, FakeEmbeddingEngine(max_tokens=128), "enc", progress, crash_at_step_37))
    progress.close()
    trainer = LocalClassifierTrainer(settings(tmp_path))
    handle = trainer.start(s)
    assert trainer.wait(handle, timeout=120) == 0
    assert trainer.progress(handle).state == "succeeded"
    lines = [json.loads(line) for line in (tmp_path / "run" / "progress.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if line["kind"] == "started"] == [0, 35]  # checkpoints every 5 steps
    assert [line["step"] for line in lines if line["kind"] == "step"] == [*range(1, 38), *range(36, 51)]


def test_encoders_and_targets_are_checked_before_a_process_starts(tmp_path: Path) -> None:
    trainer = LocalClassifierTrainer(settings(tmp_path))
    for name in ("nope", "chat"):
        with pytest.raises(InvalidInput, match="not an embedding model"):
            trainer.start(spec(tmp_path, encoder=name))
    shared = (ClassifierTargetSpec("a", ("x", "y"), True), ClassifierTargetSpec("b", ("y", "z"), True))
    with pytest.raises(InvalidInput, match="classifier_targets"):
        trainer.start(spec(tmp_path, targets=shared))
    assert not (tmp_path / "run").exists()


def test_the_service_container_has_a_classifier_trainer_with_the_configured_threads(tmp_path: Path) -> None:
    services = build_services(Settings(data_dir=tmp_path, classifier_training_threads=3))
    try:
        assert isinstance(services.classifier_trainer, LocalClassifierTrainer)
        assert services.classifier_trainer.threads == 3
    finally:
        services.close()


def test_progress_reads_per_target_metrics(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    path.write_text('{"kind": "checkpoint", "step": 2, "metrics": {"topic": {"valid_accuracy": 0.5, "x": "no", '
                    '"valid_loss": NaN}, "bad": 3}}\n{"kind": "checkpoint", "step": 3, "metrics": {}}\n')
    first, second = read_progress(path).events
    assert first.metrics == {"topic": {"valid_accuracy": 0.5}} and second.metrics is None


def zombie(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False  # gone: reaped
    return "\nState:\tZ" in status


def test_a_worker_that_ended_after_its_last_read_is_reaped_by_the_next_run(tmp_path: Path) -> None:
    trainer = LocalClassifierTrainer(settings(tmp_path), threads=1)
    first = trainer.start(spec(tmp_path, training_steps=4))
    while trainer.progress(first).state != "succeeded":  # a job reads no further once the run says it ended
        asyncio.run(asyncio.sleep(0.05))
    while not zombie(first.pid):  # the worker exits after its last line, with nobody waiting for it
        asyncio.run(asyncio.sleep(0.05))
    second = trainer.start(spec(tmp_path, training_steps=4, run_dir=str(tmp_path / "run2")))
    assert not Path(f"/proc/{first.pid}").exists()  # reaped when the next run started
    assert trainer.wait(second, timeout=120) == 0 and trainer.wait(first) == 0
