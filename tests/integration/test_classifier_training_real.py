"""Classifier fine-tuning for real: the local MiniLM encoder (``mistral-embed``) in the trainer's worker process.
A generated two-target dataset (``topic`` single-label, ``mentions`` multi-label) is trained by
``LocalClassifierTrainer``; the head file, served by the real ``classifier`` engine through the normal engine loading
path, classifies held-out lines it never saw; a cancel ends a run as cancelled; a run killed with SIGKILL resumes
without encoding its lines again and succeeds."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mistral_gateway.config import ModelEntry, Settings, default_models
from mistral_gateway.engines.base import ClassifierTrainingSpec, TrainingHandle
from mistral_gateway.engines.classifier_trainer import LocalClassifierTrainer
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.training.classifier_run import HEAD_NAME
from mistral_gateway.training.classifier_sample import TARGETS, sample_lines, write_sample

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # the real encoder, in training worker processes

ENCODER = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("classifier-data")
    write_sample(root / "train.jsonl", 150, seed=1)
    write_sample(root / "valid.jsonl", 30, seed=2)
    return root


@pytest.fixture
def trainer(tmp_path: Path, weights_dir: Path) -> Iterator[LocalClassifierTrainer]:
    runs = LocalClassifierTrainer(Settings(data_dir=tmp_path / "data", weights_path=weights_dir), threads=1,
                                  grace=10.0)
    yield runs
    runs.close()


def spec(data: Path, run_dir: Path, **fields: object) -> ClassifierTrainingSpec:
    return ClassifierTrainingSpec(encoder="mistral-embed", training_files=(str(data / "train.jsonl"),),
                                  validation_files=(str(data / "valid.jsonl"),), targets=TARGETS,
                                  run_dir=str(run_dir), **fields)  # type: ignore[arg-type]


def wait_for(condition: Callable[[], bool], what: str, limit: float = 300.0) -> None:
    """Polls until ``condition()``; the limit only stops a broken run from hanging the suite."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_a_trained_head_classifies_held_out_lines_through_the_classifier_engine(
        trainer: LocalClassifierTrainer, data: Path, tmp_path: Path, weights_dir: Path) -> None:
    handle = trainer.start(spec(data, tmp_path / "run"))
    assert trainer.wait(handle, timeout=600) == 0
    progress = trainer.progress(handle)
    assert progress.state == "succeeded", (tmp_path / "run" / "worker.log").read_text()[-2000:]
    last = [e for e in progress.events if e.kind == "checkpoint"][-1].metrics
    assert last is not None and last["topic"]["valid_accuracy"] >= 0.9

    entry = ModelEntry(id="ft-classifier", engine="classifier", encoder=ENCODER, path=progress.adapter,
                       capabilities=["classification"])
    settings = Settings(data_dir=tmp_path / "serve", weights_path=weights_dir,
                        models=[*(m for m in default_models() if m.id == ENCODER), entry])
    manager = EngineManager(settings)
    heldout = sample_lines(90, seed=3, heldout=True)

    async def classify() -> list:
        engine = await manager.classifier(entry)  # loads MiniLM, then the head, and checks the head's probe
        return await engine.classify([line["text"] for line in heldout])

    try:
        results = asyncio.run(classify())
    finally:
        manager.close()
    topics = [max(r.scores["topic"], key=r.scores["topic"].get) for r in results]
    accuracy = sum(t == line["labels"]["topic"] for t, line in zip(topics, heldout, strict=True)) / len(heldout)
    assert accuracy >= 0.9
    mentioned = [(line, r) for line, r in zip(heldout, results, strict=True) if "mentions" in line["labels"]]
    exact = sum({label for label, s in r.scores["mentions"].items() if s >= 0.5} == set(line["labels"]["mentions"])
                for line, r in mentioned) / len(mentioned)
    assert exact >= 0.9


def lines(run_dir: Path) -> list[dict]:
    """The complete lines of the run's progress file (the last may still be being written)."""
    path = run_dir / "progress.jsonl"
    return [json.loads(line) for line in path.read_text().split("\n")[:-1]] if path.exists() else []


def test_cancel_stops_a_run(trainer: LocalClassifierTrainer, data: Path, tmp_path: Path) -> None:
    handle = trainer.start(spec(data, tmp_path / "run", training_steps=20_000))
    wait_for(lambda: any(line["kind"] == "started" for line in lines(tmp_path / "run")), "the run to start")
    trainer.cancel(handle)
    trainer.wait(handle, timeout=60)
    progress = trainer.progress(handle)
    assert progress.state == "cancelled" and progress.adapter is None
    assert not (tmp_path / "run" / HEAD_NAME).exists()


def test_a_killed_run_resumes_without_encoding_again(trainer: LocalClassifierTrainer, data: Path,
                                                     tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = trainer.start(spec(data, run_dir, training_steps=20_000))
    wait_for(lambda: any(line["kind"] == "checkpoint" for line in lines(run_dir)), "a first checkpoint")
    os.kill(first.pid, signal.SIGKILL)
    trainer.wait(first, timeout=60)
    assert trainer.progress(TrainingHandle(str(run_dir), first.pid)).state == "crashed"
    parts = sorted((run_dir / "features").glob("*/part-*.npy"))
    stamps = [p.stat().st_mtime_ns for p in parts]
    assert len(parts) == 2  # the training lines and the validation lines

    second = trainer.start(spec(data, run_dir, training_steps=20_000))
    assert trainer.wait(second, timeout=600) == 0
    assert trainer.progress(second).state == "succeeded"
    assert [p.stat().st_mtime_ns for p in parts] == stamps  # read from the cache, not encoded again
    started = [line["step"] for line in lines(run_dir) if line["kind"] == "started"]
    assert started[0] == 0 and started[1] >= 2000  # resumed from a checkpoint, not from the start
