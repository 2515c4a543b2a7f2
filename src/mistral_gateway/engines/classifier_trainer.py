"""The local classifier trainer (``ClassifierTrainerEngine``): each run is a worker process
(``training.classifier_worker``) over a run directory, managed as ``engines.training_runs`` describes. On success
``TrainingProgress.adapter`` is the head file (``<run_dir>/head.safetensors``), which a catalog entry
``ModelEntry(engine="classifier", encoder=<spec.encoder>, path=<head file>)`` serves.

``start`` resolves the spec's encoder (a catalog id or alias of an embedding model) here, so a bad name fails at once
(``InvalidInput``), and hands the worker that entry, the weights directory and ``threads``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import ClassifierTrainingSpec, InvalidInput, TrainingHandle
from mistral_gateway.engines.manager import kind_of
from mistral_gateway.engines.training_runs import WorkerRuns
from mistral_gateway.training.classifier_head import check_targets
from mistral_gateway.training.classifier_worker import write_spec

__all__ = ["LocalClassifierTrainer"]


class LocalClassifierTrainer(WorkerRuns):
    def __init__(self, settings: Settings, *, threads: int = 1, grace: float = 5.0,
                 python: str = sys.executable) -> None:
        super().__init__("mistral_gateway.training.classifier_worker", grace=grace, python=python)
        self._settings = settings
        self.threads = threads

    def start(self, spec: ClassifierTrainingSpec) -> TrainingHandle:
        encoder = self.encoder(spec.encoder)
        try:
            check_targets(spec.targets)
        except ValueError as exc:
            raise InvalidInput(f"classifier_targets: {exc}") from exc
        return self.launch(Path(spec.run_dir),
                           lambda: write_spec(spec, encoder, self._settings.weights_dir, self.threads))

    def encoder(self, name: str) -> ModelEntry:
        """The catalog entry of the sentence encoder ``name`` (an id or alias)."""
        entry = next((e for e in self._settings.models if name == e.id or name in e.aliases), None)
        if entry is None or kind_of(entry) != "embedding":
            raise InvalidInput(f"encoder {name!r} is not an embedding model of this server's catalog")
        return entry
