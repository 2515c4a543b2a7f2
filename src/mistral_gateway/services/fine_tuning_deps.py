"""What the fine-tuning service and its job handler work with, and the checks both run on a job's files.

``inspect`` is the one validation path: the dry run calls it without a run directory (estimates only), the job
handler with one (the good lines are copied there for the trainer).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mistral_gateway.config import ModelEntry
from mistral_gateway.engines.base import ClassifierTargetSpec, ClassifierTrainerEngine, TrainerEngine
from mistral_gateway.services.fine_tuning_bases import Base
from mistral_gateway.services.fine_tuning_data import (
    DEFAULT_SEQ_LEN,
    Checked,
    SourceFile,
    check_files,
    classifier_checker,
    completion_checker,
)
from mistral_gateway.services.models import ModelCatalog
from mistral_gateway.storage.blob_files import local_file
from mistral_gateway.storage.blobs import BlobNotFound, BlobStore
from mistral_gateway.storage.files import FileRepository
from mistral_gateway.storage.fine_tuning import FineTuningRepository
from mistral_gateway.storage.jobs import JobRepository
from mistral_gateway.storage.models import FineTunedModelRepository
from mistral_gateway.training.classifier_data import infer_targets
from mistral_gateway.training.classifier_head import check_targets

__all__ = ["FineTuningDeps", "Inspection", "Unusable", "inspect", "target_dicts", "targets_of"]

JOB_KIND = "fine_tuning"


class Unusable(Exception):
    """The job cannot be validated at all (a file is gone, the base has no weights): the reason, for the events."""


@dataclass
class FineTuningDeps:
    repo: FineTuningRepository
    files: FileRepository
    blobs: BlobStore
    catalog: ModelCatalog
    models: FineTunedModelRepository
    data_dir: Path
    trainer: TrainerEngine
    tokenizer: Callable[[Path], Any]  # base GGUF -> its tokenizer (validation, estimates)
    locate: Callable[[ModelEntry], Path | None]  # a catalog entry -> its weights file
    merge: Callable[[Path, Path, Path], None]  # (base GGUF, adapter GGUF, out): the merged model
    # the classifier jobs' trainer, read when a job starts training; None: they fail with a clear reason
    classifier_trainer: Callable[[], ClassifierTrainerEngine | None] = field(default=lambda: None)
    jobs: JobRepository | None = None  # the durable runner's jobs: a job whose runner job died shows FAILED
    encoder: str = "mistral-embed"  # the classifier jobs' embedding model
    threads: int = 1
    poll_seconds: float = 1.0
    max_resumes: int = 3
    clock: Callable[[], float] = time.time
    submit: Callable[[str, dict[str, Any], str], None] = field(  # (workspace, payload, runner job id)
        default=lambda workspace_id, payload, job_id: None)

    def run_dir(self, job_id: str) -> Path:
        return self.data_dir / "fine_tuning" / job_id

    def now(self) -> int:
        return int(self.clock())


@dataclass(frozen=True, slots=True)
class Inspection:
    train: Checked
    valid: Checked
    base_bytes: int | None  # the base GGUF's size (completion jobs: the duration estimate scales with it)
    inferred_targets: tuple[ClassifierTargetSpec, ...] = ()  # a classifier job that named none: read from its data

    @property
    def bad_count(self) -> int:
        return self.train.bad_count + self.valid.bad_count

    @property
    def total(self) -> int:
        return self.train.total + self.valid.total


def targets_of(raw: list[dict[str, Any]] | None) -> tuple[ClassifierTargetSpec, ...]:
    return tuple(ClassifierTargetSpec(name=t["name"], labels=tuple(t["labels"]),
                                      multi_label=t.get("loss_function") == "multi_class",
                                      weight=float(t.get("weight", 1.0))) for t in raw or ())


def inspect(deps: FineTuningDeps, workspace_id: str, base: Base, hp: dict[str, Any], training: list[str],
            validation: list[str], targets: list[dict[str, Any]] | None, run_dir: Path | None = None) -> Inspection:
    """Check every line of the job's files (blocking: call it off the event loop)."""
    train_files = [_source(deps, workspace_id, f) for f in training]
    valid_files = [_source(deps, workspace_id, f) for f in validation]
    base_bytes, inferred = None, ()
    if base.job_type == "classifier":
        if targets:
            check = classifier_checker(targets_of(targets))
        else:
            try:
                inferred = infer_targets(_raw_lines(train_files))
                check_targets(inferred)
            except ValueError as exc:
                raise Unusable(str(exc)) from None
            check = classifier_checker(inferred)
    else:
        gguf = deps.locate(base.entry)
        if gguf is None or not gguf.is_file():
            raise Unusable(f"the weights of {base.model!r} are not available here")
        base_bytes = gguf.stat().st_size
        check = completion_checker(deps.tokenizer(gguf), int(hp.get("seq_len") or DEFAULT_SEQ_LEN))
    out = None if run_dir is None else run_dir / "data"
    return Inspection(check_files(train_files, check, out, "train"), check_files(valid_files, check, out, "valid"),
                      base_bytes, inferred)


def _raw_lines(files: list[SourceFile]) -> Iterator[bytes]:
    for source in files:
        with source.path.open("rb") as f:
            yield from f


def target_dicts(targets: tuple[ClassifierTargetSpec, ...]) -> list[dict[str, Any]]:
    """As a job stores (and shows) its classifier_targets."""
    return [{"name": t.name, "labels": list(t.labels), "weight": t.weight,
             "loss_function": "multi_class" if t.multi_label else "single_class"} for t in targets]


def _source(deps: FineTuningDeps, workspace_id: str, file_id: str) -> SourceFile:
    record = deps.files.get(workspace_id, file_id, deps.now())
    if record is None:
        raise Unusable(f"file {file_id} not found (deleted or expired?)")
    # the checker and trainer read files by path: a blob on S3 is copied under the data dir first
    try:
        path = local_file(deps.blobs, record.blob_key, deps.data_dir / "training" / "blob-cache")
    except BlobNotFound:
        raise Unusable(f"the content of file {file_id} is missing from storage") from None
    return SourceFile(file_id, record.filename, path)
