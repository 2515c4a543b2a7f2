"""The classifier training worker process: ``python -m mistral_gateway.training.classifier_worker RUN_DIR``.

Reads ``RUN_DIR/spec.json`` (a ``ClassifierTrainingSpec``) and ``RUN_DIR/worker.json`` (the encoder's catalog entry,
the weights directory and the thread count, written by ``engines.classifier_trainer``), loads the encoder with the
server's own loader (one worker thread, ``threads`` torch threads) and trains (``training.classifier_run``) inside
``run_worker``: bounded threads, lower priority, and always a terminal line in ``progress.jsonl``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import ClassifierTargetSpec, ClassifierTrainingSpec
from mistral_gateway.training.progress import ProgressWriter
from mistral_gateway.training.worker_main import SPEC_NAME, run_worker, write_json_atomic

__all__ = ["WORKER_NAME", "main", "read_spec", "write_spec"]

WORKER_NAME = "worker.json"


def write_spec(spec: ClassifierTrainingSpec, encoder: ModelEntry, weights_dir: Path, threads: int) -> None:
    run_dir = Path(spec.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / WORKER_NAME, {"encoder": encoder.model_dump(mode="json"),
                                              "weights_dir": str(weights_dir), "threads": threads})
    write_json_atomic(run_dir / SPEC_NAME, asdict(spec))


def read_spec(run_dir: Path) -> ClassifierTrainingSpec:
    raw: dict[str, Any] = json.loads((run_dir / SPEC_NAME).read_text(encoding="utf-8"))
    targets = tuple(ClassifierTargetSpec(t["name"], tuple(t["labels"]), t.get("multi_label", False),
                                         t.get("weight", 1.0)) for t in raw.pop("targets"))
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return ClassifierTrainingSpec(targets=targets, **values)


def main(argv: list[str] | None = None) -> int:
    run_dir = Path((argv or sys.argv)[1])
    spec = read_spec(run_dir)
    config = json.loads((run_dir / WORKER_NAME).read_text(encoding="utf-8"))
    threads = int(config["threads"])
    # one batcher worker with every allowed torch thread: the worker's whole budget, nothing beside it
    entry = ModelEntry.model_validate({**config["encoder"], "threads": threads, "parallel": 1})

    def train(progress: ProgressWriter, stop: Callable[[], bool]) -> tuple[Path, int]:
        return asyncio.run(_train(spec, entry, Path(config["weights_dir"]), progress, stop))

    return run_worker(run_dir, threads, train)


async def _train(spec: ClassifierTrainingSpec, entry: ModelEntry, weights_dir: Path, progress: ProgressWriter,
                 stop: Callable[[], bool]) -> tuple[Path, int]:
    from mistral_gateway.engines.manager import EngineManager
    from mistral_gateway.training.classifier_run import run

    manager = EngineManager(Settings.model_construct(models=[entry], weights_path=weights_dir))
    try:
        encoder = await manager.embedding(entry)
        return await run(spec, encoder, entry.id, progress, stop)
    finally:
        manager.close()


if __name__ == "__main__":
    sys.exit(main())
