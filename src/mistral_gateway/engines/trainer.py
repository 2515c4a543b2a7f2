"""The local LoRA trainer: each run is a worker process (``training.lora_worker``) over a run directory, managed as
``engines.training_runs`` describes (spec in, progress out, resume after a crash, cancel within seconds).
"""

from __future__ import annotations

import sys
from pathlib import Path

from mistral_gateway.engines.base import TrainingHandle, TrainingSpec
from mistral_gateway.engines.training_runs import WorkerRuns
from mistral_gateway.training.lora_worker import write_spec

__all__ = ["LocalTrainer"]


class LocalTrainer(WorkerRuns):
    def __init__(self, *, grace: float = 5.0, python: str = sys.executable) -> None:
        super().__init__("mistral_gateway.training.lora_worker", grace=grace, python=python)

    def start(self, spec: TrainingSpec) -> TrainingHandle:
        return self.launch(Path(spec.run_dir), lambda: write_spec(spec))
