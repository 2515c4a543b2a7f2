"""The classifier trainer's pieces without a real encoder: lines to per-target rows, the fit plan (how Mistral's
hyperparameters map onto it), the AdamW fit and its checkpoint state, the metrics, and a whole run in-process over a
bag-of-words encoder (head file round trip, served by the classifier engine, progress lines, cached embeddings,
stop and resume)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import ClassifierTargetSpec, ClassifierTrainingSpec, Embeddings
from mistral_gateway.engines.head_format import HeadError, load_head
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.training.classifier_data import ClassifierExample
from mistral_gateway.training.classifier_fit import LR_SCALE, MIN_STEPS, FitPlan, HeadFit, plan_fit, target_rows
from mistral_gateway.training.classifier_head import check_targets
from mistral_gateway.training.classifier_metrics import multi_label_metrics, single_label_metrics
from mistral_gateway.training.classifier_run import HEAD_NAME, STATE_NAME, run
from mistral_gateway.training.classifier_sample import TARGETS, sample_lines, write_sample
from mistral_gateway.training.progress import ProgressWriter, read_progress
from mistral_gateway.training.worker_main import Stopped


class BagEncoder:
    """Each word (lowercased, letters only) adds 1 to a hashed dimension; rows are L2-normalised."""

    def __init__(self, dimensions: int = 256) -> None:
        self.dimensions = dimensions
        self.max_tokens = 256
        self.texts: list[str] = []

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        self.texts += texts
        vectors = []
        for text in texts:
            row = np.zeros(self.dimensions)
            for word in re.findall(r"[a-z]+", text.lower()):
                row[zlib.crc32(word.encode()) % self.dimensions] += 1.0
            vectors.append((row / (np.linalg.norm(row) or 1.0)).tolist())
        return Embeddings(vectors=vectors, token_counts=[len(t.split()) + 2 for t in texts])


def spec(tmp_path: Path, *, train: int = 150, valid: int = 60, run_dir: str = "run",
         **fields: object) -> ClassifierTrainingSpec:
    if not (tmp_path / "train.jsonl").exists():
        write_sample(tmp_path / "train.jsonl", train, seed=1)
        write_sample(tmp_path / "valid.jsonl", valid, seed=2)
    return ClassifierTrainingSpec(encoder="bag", training_files=(str(tmp_path / "train.jsonl"),), targets=TARGETS,
                                  run_dir=str(tmp_path / run_dir), validation_files=(str(tmp_path / "valid.jsonl"),),
                                  **fields)  # type: ignore[arg-type]


def train(spec: ClassifierTrainingSpec, encoder: BagEncoder, stop=lambda: False) -> tuple[Path, int]:
    Path(spec.run_dir).mkdir(parents=True, exist_ok=True)
    progress = ProgressWriter(Path(spec.run_dir) / "progress.jsonl")
    try:
        return asyncio.run(run(spec, encoder, "bag", progress, stop))
    finally:
        progress.close()


# -- pieces ---------------------------------------------------------------------------------------------------
def test_rows_per_target_only_from_the_lines_that_label_it() -> None:
    examples = [ClassifierExample("a", {"topic": ("finance",), "mentions": ("animal", "color")}),
                ClassifierExample("b", {"topic": ("sports",)}),
                ClassifierExample("c", {"mentions": ("color",)})]
    topic, mentions = target_rows(examples, TARGETS)
    assert topic.rows.tolist() == [0, 1] and topic.truth.tolist() == [2, 0]
    assert mentions.rows.tolist() == [0, 2] and mentions.truth.tolist() == [[1, 1], [0, 1]]


def test_the_plan_maps_mistrals_hyperparameters() -> None:
    base = ClassifierTrainingSpec(encoder="e", training_files=(), targets=TARGETS, run_dir="r")
    assert plan_fit(replace(base, training_steps=7, epochs=3.0), 1000).total_steps == 7  # steps win over epochs
    epochs = replace(base, epochs=2.5, learning_rate=3e-4, weight_decay=0.01, warmup_fraction=0.1, seed=4)
    plan = plan_fit(epochs, 100)  # 4 batches of 32 per epoch
    assert (plan.total_steps, plan.warmup_steps, plan.weight_decay, plan.seed) == (10, 1, 0.01, 4)
    assert plan.learning_rate == pytest.approx(3e-4 * LR_SCALE)
    assert plan_fit(base, 100).total_steps == MIN_STEPS  # no steps, no epochs: enough to converge
    assert plan_fit(base, 10_000).total_steps == 20 * 313


def test_the_step_size_warms_up_then_decays_to_a_tenth() -> None:
    plan = FitPlan(total_steps=10, batch_size=4, learning_rate=1.0, weight_decay=0.0, warmup_steps=2, seed=0)
    rates = [plan.rate(step) for step in range(10)]
    assert rates[:3] == [0.5, 1.0, 1.0] and rates[-1] == pytest.approx(1.0 - 0.9 * 7 / 8)
    assert all(a >= b for a, b in itertools.pairwise(rates[1:]))


def separable(seed: int = 0) -> tuple[np.ndarray, list[ClassifierExample]]:
    """Features whose first dimensions say the labels, on an offset and a scale standardisation must undo."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(120, 6)) * 0.1
    examples = []
    for i in range(120):
        topic = ("sports", "cooking", "finance")[i % 3]
        x[i, i % 3] += 1.0
        mentions = tuple(label for j, label in enumerate(("animal", "color")) if (i // 3 + j) % 2 == 0)
        x[i, 3] += "animal" in mentions
        x[i, 4] += "color" in mentions
        examples.append(ClassifierExample(f"t{i}", {"topic": (topic,), "mentions": mentions}))
    return x * 7.0 + 3.0, examples


def test_the_fit_separates_separable_rows_and_folds_the_standardisation_into_the_weights() -> None:
    x, examples = separable()
    rows = target_rows(examples, TARGETS)
    fit = HeadFit(x, rows, FitPlan(200, 32, 0.01, 0.1, 10, 0))
    losses = [fit.train_step() for _ in range(200)]
    assert losses[-1] < losses[0] / 5
    (w_topic, b_topic), (w_mentions, b_mentions) = fit.weights().values()
    assert ((x @ w_topic.T + b_topic).argmax(axis=1) == rows[0].truth).all()
    assert (((x @ w_mentions.T + b_mentions) > 0) == rows[1].truth.astype(bool)).all()


def test_a_fit_resumed_from_its_state_ends_where_an_uninterrupted_one_does() -> None:
    x, examples = separable(1)
    rows = target_rows(examples, TARGETS)
    plan = FitPlan(40, 16, 0.01, 0.1, 4, 3)
    whole = HeadFit(x, rows, plan)
    for _ in range(40):
        whole.train_step()
    first = HeadFit(x, rows, plan)
    for _ in range(25):
        first.train_step()
    second = HeadFit(x, rows, plan)
    second.load_state(first.state())
    for _ in range(15):
        second.train_step()
    for (a, b), (c, d) in zip(whole.weights().values(), second.weights().values(), strict=True):
        assert np.array_equal(a, c) and np.array_equal(b, d)
    with pytest.raises(ValueError, match="another fit"):
        HeadFit(x[:, :5], rows, plan).load_state(first.state())


def test_single_label_metrics() -> None:
    scores = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    m = single_label_metrics(scores, np.array([0, 1, 1, 2]))
    # label 0: tp 1, predicted 2, true 1 -> 2/3; label 1: tp 1, predicted 1, true 2 -> 2/3; label 2: 1
    assert m["valid_accuracy"] == 0.75 and m["valid_macro_f1"] == round((2 / 3 + 2 / 3 + 1) / 3, 4)
    assert m["valid_loss"] == round(-np.mean(np.log([0.8, 0.7, 0.3, 0.8])), 4)


def test_multi_label_metrics() -> None:
    scores = np.array([[0.9, 0.2], [0.6, 0.7], [0.1, 0.4]])
    truth = np.array([[1, 0], [0, 1], [0, 1]])
    m = multi_label_metrics(scores, truth, [0.5, 0.5])
    # predicted: (1,0) (1,1) (0,0); first label f1 2*1/(2+1), second 2*1/(1+2); micro: tp 2, pred 3, true 3
    assert m["valid_micro_f1"] == round(4 / 6, 4) and m["valid_macro_f1"] == round(2 / 3, 4)
    assert multi_label_metrics(scores, truth, [0.95, 0.05])["valid_macro_f1"] == round((0 + 2 * 2 / 5) / 2, 4)


def test_targets_the_head_format_cannot_hold_are_refused_up_front() -> None:
    check_targets(TARGETS)
    with pytest.raises(HeadError, match="must differ across targets"):
        check_targets((ClassifierTargetSpec("a", ("yes", "maybe"), True), ClassifierTargetSpec("b", ("yes",), True)))
    with pytest.raises(HeadError, match="at least two labels"):
        check_targets((ClassifierTargetSpec("a", ("only",)),))
    with pytest.raises(HeadError, match="target names"):
        check_targets((ClassifierTargetSpec("bad name", ("x", "y")),))


# -- a whole run ------------------------------------------------------------------------------------------------
def test_a_run_writes_a_head_the_classifier_engine_serves(tmp_path: Path) -> None:
    encoder = BagEncoder()
    head_path, steps = train(spec(tmp_path), encoder)
    assert head_path == tmp_path / "run" / HEAD_NAME and steps == MIN_STEPS
    head = load_head(head_path)
    assert [(t.name, t.labels, t.multi_label) for t in head.targets] == [
        ("topic", ("sports", "cooking", "finance"), False), ("mentions", ("animal", "color"), True)]
    assert head.thresholds == {"animal": 0.5, "color": 0.5}
    assert head.training["train_examples"] == 150 and head.training["plan"]["total_steps"] == MIN_STEPS
    assert head.encoder.model == "bag" and len(head.encoder.probe_values) == 8

    heldout = sample_lines(45, seed=9)  # new lines of seen sentences: bags of words do not generalise
    settings = Settings(data_dir=tmp_path, models=[
        ModelEntry(id="bag", engine="fake", capabilities=[]),
        ModelEntry(id="mine", engine="classifier", encoder="bag", path=str(head_path),
                   capabilities=["classification"])])
    manager = EngineManager(settings, loaders={("fake", "embedding"): lambda *_: encoder})

    async def classify() -> list:
        engine = await manager.classifier(settings.models[1])  # checks the probe too
        return await engine.classify([line["text"] for line in heldout])

    results = asyncio.run(classify())
    topics = [max(r.scores["topic"], key=r.scores["topic"].get) for r in results]
    assert sum(t == line["labels"]["topic"] for t, line in zip(topics, heldout, strict=True)) >= 43
    assert all(abs(sum(r.scores["topic"].values()) - 1.0) < 1e-6 for r in results)
    mentioned = [(line, r) for line, r in zip(heldout, results, strict=True) if "mentions" in line["labels"]]
    right = sum({label for label, s in r.scores["mentions"].items() if s >= 0.5} == set(line["labels"]["mentions"])
                for line, r in mentioned)
    assert right >= 0.9 * len(mentioned)


def test_progress_has_steps_and_checkpoints_with_metrics_per_target(tmp_path: Path) -> None:
    train(spec(tmp_path, training_steps=30), BagEncoder())
    raw = [json.loads(line) for line in (tmp_path / "run" / "progress.jsonl").read_text().splitlines()]
    assert raw[0] == {"kind": "started", "total_steps": 30, "step": 0, "examples": 150, "valid_examples": 60,
                      "skipped_lines": 0, "skipped": []}
    log = read_progress(tmp_path / "run" / "progress.jsonl")
    checkpoints = [e for e in log.events if e.kind == "checkpoint"]
    assert [c.step for c in checkpoints] == [3 * i for i in range(1, 11)]
    assert [e.step for e in log.events if e.kind == "step"] == list(range(1, 31))
    last = checkpoints[-1].metrics
    assert last is not None and set(last) == {"topic", "mentions"}
    assert set(last["topic"]) == {"valid_loss", "valid_accuracy", "valid_macro_f1"}
    assert set(last["mentions"]) == {"valid_loss", "valid_micro_f1", "valid_macro_f1"}
    assert checkpoints[-1].valid_loss == pytest.approx((last["topic"]["valid_loss"] +
                                                        last["mentions"]["valid_loss"]) / 2, abs=1e-4)
    assert checkpoints[-1].train_loss is not None and checkpoints[-1].train_loss < checkpoints[0].train_loss


def test_without_validation_lines_checkpoints_carry_no_metrics(tmp_path: Path) -> None:
    train(replace(spec(tmp_path, training_steps=4), validation_files=()), BagEncoder())
    checkpoints = [e for e in read_progress(tmp_path / "run" / "progress.jsonl").events if e.kind == "checkpoint"]
    assert checkpoints and all(c.metrics is None and c.valid_loss is None for c in checkpoints)


def test_bad_lines_are_skipped_and_a_target_no_line_labels_fails_the_run(tmp_path: Path) -> None:
    s = spec(tmp_path, training_steps=2)
    with open(s.training_files[0], "a") as fh:
        fh.write('{"text": "x", "labels": {"topic": "nope"}}\nnot json\n\n')
    train(s, BagEncoder())
    started = json.loads((tmp_path / "run" / "progress.jsonl").read_text().splitlines()[0])
    assert started["skipped_lines"] == 2
    assert started["skipped"][0].startswith("train.jsonl:151: label 'nope' is not one of 'topic'")
    assert started["skipped"][1].startswith("train.jsonl:152: not valid JSON")
    only_topic = tmp_path / "topic.jsonl"
    only_topic.write_text('{"text": "The chef baked bread.", "labels": {"topic": "cooking"}}\n')
    s2 = ClassifierTrainingSpec(encoder="bag", training_files=(str(only_topic),), targets=TARGETS,
                                run_dir=str(tmp_path / "r2"))
    with pytest.raises(ValueError, match=r"no training line labels the target\(s\) mentions"):
        train(s2, BagEncoder())


def test_stop_then_resume_reuses_the_embeddings_and_ends_as_an_uninterrupted_run(tmp_path: Path) -> None:
    whole = load_head(train(spec(tmp_path, training_steps=40, run_dir="whole"), BagEncoder())[0])
    calls = {"n": 0}

    def stop_after_25_steps() -> bool:
        calls["n"] += 1
        return calls["n"] > 25 + 7  # 7 encoder batches (150 + 60 lines in 32s) ask first
    with pytest.raises(Stopped) as stopped:
        train(spec(tmp_path, training_steps=40, run_dir="cut"), BagEncoder(), stop_after_25_steps)
    assert stopped.value.args == (25,)
    assert (tmp_path / "cut" / STATE_NAME).exists()  # the checkpoint at step 24
    again = BagEncoder()
    resumed = load_head(train(spec(tmp_path, training_steps=40, run_dir="cut"), again)[0])
    assert len(again.texts) == 1  # the probe only: every line's embedding came from the cache
    lines = (tmp_path / "cut" / "progress.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines if '"started"' in line] == [0, 24]
    for name in ("topic", "mentions"):
        assert np.array_equal(whole.weights[name], resumed.weights[name])
        assert np.array_equal(whole.biases[name], resumed.biases[name])


def test_a_stop_during_encoding_keeps_the_parts_already_encoded(tmp_path: Path) -> None:
    s = spec(tmp_path, train=600, training_steps=2)
    calls = {"n": 0}

    def stop_in_the_third_part() -> bool:
        calls["n"] += 1
        return calls["n"] > 17  # 8 batches of 32 per 256-line part
    with pytest.raises(Stopped):
        train(s, BagEncoder(), stop_in_the_third_part)
    again = BagEncoder()
    train(s, again)
    assert len(again.texts) == 600 - 2 * 256 + 60 + 1  # the rest, the validation lines and the probe


def test_changed_hyperparameters_start_the_fit_over(tmp_path: Path) -> None:
    train(spec(tmp_path, training_steps=10), BagEncoder())
    train(spec(tmp_path, training_steps=12), BagEncoder())
    lines = (tmp_path / "run" / "progress.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines if '"started"' in line] == [0, 0]
