"""The LoRA training worker process: ``python -m mistral_gateway.training.lora_worker RUN_DIR``.

Reads ``RUN_DIR/spec.json`` (a ``TrainingSpec``) and trains (``training.lora_run``) inside ``run_worker``, which
bounds the threads before torch loads, lowers the priority and always ends the progress file with a terminal line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from mistral_gateway.engines.base import TrainingSpec
from mistral_gateway.training.progress import ProgressWriter
from mistral_gateway.training.worker_main import PROGRESS_NAME, SPEC_NAME, run_worker, write_json_atomic

__all__ = ["PROGRESS_NAME", "SPEC_NAME", "main", "read_spec", "write_spec"]


def write_spec(spec: TrainingSpec) -> None:
    run_dir = Path(spec.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / SPEC_NAME, asdict(spec))


def read_spec(run_dir: Path) -> TrainingSpec:
    raw: dict[str, Any] = json.loads((run_dir / SPEC_NAME).read_text(encoding="utf-8"))
    known = {f.name for f in fields(TrainingSpec)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
    return TrainingSpec(**values)


def main(argv: list[str] | None = None) -> int:
    run_dir = Path((argv or sys.argv)[1])
    spec = read_spec(run_dir)

    def train(progress: ProgressWriter, stop: Callable[[], bool]) -> tuple[Path, int]:
        from mistral_gateway.training.lora_run import run  # torch loads here, after the threads are bounded

        return run(spec, progress, stop=stop)

    return run_worker(run_dir, spec.threads, train)


if __name__ == "__main__":
    sys.exit(main())
