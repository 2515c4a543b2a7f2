"""Classifier fine-tuning figures: a generated two-target dataset (``training.classifier_sample``: ``topic``
single-label, ``mentions`` multi-label) of ``--lines`` lines trained by ``LocalClassifierTrainer`` in its real worker
process over the local MiniLM encoder, then ``--heldout`` lines built from sentences training never saw classified
through the ``classifier`` engine as the server loads it. Prints one JSON object.

    python bench/classifier_training.py [--lines 1000] [--heldout 300] [--threads 1] [--weights-dir DIR]

Times: the whole run (worker start, encoder load, encoding, fit, head file), and the run's own encode and fit
seconds (from the head's training record). Held-out: topic accuracy, and for the lines that label ``mentions`` the
share whose predicted label set is exactly right, plus its micro F1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mistral_gateway.config import ModelEntry, Settings, default_models
from mistral_gateway.engines.base import ClassifierTrainingSpec
from mistral_gateway.engines.classifier_trainer import LocalClassifierTrainer
from mistral_gateway.engines.head_format import load_head
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.training.classifier_metrics import multi_label_metrics
from mistral_gateway.training.classifier_sample import TARGETS, sample_lines, write_sample

ENCODER = "all-minilm-l6-v2"


def train(args: argparse.Namespace, work: Path) -> tuple[Path, dict[str, object]]:
    write_sample(work / "train.jsonl", args.lines, seed=1)
    write_sample(work / "valid.jsonl", max(1, args.lines // 10), seed=2)
    spec = ClassifierTrainingSpec(encoder="mistral-embed", training_files=(str(work / "train.jsonl"),),
                                  validation_files=(str(work / "valid.jsonl"),), targets=TARGETS,
                                  run_dir=str(work / "run"))
    trainer = LocalClassifierTrainer(Settings(data_dir=work / "data", weights_path=args.weights_dir),
                                     threads=args.threads)
    began = time.monotonic()
    handle = trainer.start(spec)
    trainer.wait(handle)
    progress = trainer.progress(handle)
    if progress.state != "succeeded" or progress.adapter is None:
        raise SystemExit(f"training {progress.state}: {(work / 'run' / 'worker.log').read_text()[-2000:]}")
    record = load_head(progress.adapter).training
    return Path(progress.adapter), {
        "lines": args.lines, "threads": args.threads, "steps": progress.total_steps,
        "run_wall_s": round(time.monotonic() - began, 2), "encode_s": record["encode_seconds"],
        "fit_s": record["fit_seconds"], "valid_metrics": record["valid_metrics"]}


def heldout(head: Path, args: argparse.Namespace, work: Path) -> dict[str, object]:
    entry = ModelEntry(id="bench-classifier", engine="classifier", encoder=ENCODER, path=str(head),
                       capabilities=["classification"])
    settings = Settings(data_dir=work / "serve", weights_path=args.weights_dir,
                        models=[*(m for m in default_models() if m.id == ENCODER), entry])
    lines = sample_lines(args.heldout, seed=3, heldout=True)
    manager = EngineManager(settings)

    async def classify() -> list:
        engine = await manager.classifier(entry)
        return await engine.classify([line["text"] for line in lines])

    try:
        results = asyncio.run(classify())
    finally:
        manager.close()
    topic = np.mean([max(r.scores["topic"], key=r.scores["topic"].get) == line["labels"]["topic"]
                     for line, r in zip(lines, results, strict=True)])
    labels = TARGETS[1].labels
    mentioned = [(line, r) for line, r in zip(lines, results, strict=True) if "mentions" in line["labels"]]
    scores = np.array([[r.scores["mentions"][label] for label in labels] for _, r in mentioned])
    truth = np.array([[label in line["labels"]["mentions"] for label in labels] for line, _ in mentioned])
    exact = np.mean(((scores >= 0.5) == truth).all(axis=1))
    return {"heldout_lines": len(lines), "heldout_topic_accuracy": round(float(topic), 4),
            "heldout_mentions_exact": round(float(exact), 4),
            "heldout_mentions_micro_f1": multi_label_metrics(scores, truth, [0.5, 0.5])["valid_micro_f1"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--heldout", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights-dir", type=Path, default=Path(".mistral-gateway/weights"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-classifier-") as scratch:
        head, report = train(args, Path(scratch))
        report |= heldout(head, args, Path(scratch))
    json.dump(report, sys.stdout)
    print()


if __name__ == "__main__":
    main()
