"""The job runner's handler for kind ``fine_tuning``: validate a job's files, then (auto_start or /start) drive the
trainer until it ends, recording checkpoints and status changes; on success register the fine-tuned model.

It works from the job's row alone, so a handler that dies (server killed) is simply run again by the runner: a
validation is redone, a trainer whose worker outlived the server is watched again (its pid is stored), a crashed
trainer is started again on the same run directory (the LoRA trainer resumes from its last checkpoint), up to
``max_resumes`` times; then the job fails with the reason in its events.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from anyio.to_thread import run_sync

from mistral_gateway.engines.base import (
    ClassifierTrainingSpec,
    EngineBusy,
    TrainingEvent,
    TrainingHandle,
    TrainingProgress,
    TrainingSpec,
)
from mistral_gateway.errors import GatewayError
from mistral_gateway.protocol.fine_tuning import TERMINAL_STATUSES
from mistral_gateway.services.batch_run import JobContextLike
from mistral_gateway.services.fine_tuning_bases import Base, fine_tuned_id, resolve_base
from mistral_gateway.services.fine_tuning_data import DEFAULT_SEQ_LEN, estimate
from mistral_gateway.services.fine_tuning_deps import (
    FineTuningDeps,
    Inspection,
    Unusable,
    inspect,
    target_dicts,
    targets_of,
)
from mistral_gateway.storage.fine_tuning import CheckpointRecord, EventRecord, FineTuningJobRecord
from mistral_gateway.storage.records import FineTunedModelRecord

__all__ = ["run_fine_tuning"]

TRAINING = ("STARTED", "RUNNING", "CANCELLATION_REQUESTED")


async def run_fine_tuning(ctx: JobContextLike, deps: FineTuningDeps) -> None:
    record = await run_sync(deps.repo.get, str(ctx.payload.get("job_id", "")))
    if record is None:
        return  # deleted meanwhile: nothing to do
    if record.status in ("QUEUED", "VALIDATING"):
        record = await _validate(record, deps)
    if record.status == "VALIDATED" and record.auto_start:
        await run_sync(lambda: deps.repo.transition(record.id, "STARTED", deps.now(), only_if=("VALIDATED",)))
        record = await _reload(deps, record)
    if record.status in TRAINING:
        await _Training(record, deps).run()


async def _reload(deps: FineTuningDeps, record: FineTuningJobRecord) -> FineTuningJobRecord:
    fresh = await run_sync(deps.repo.get, record.id)
    assert fresh is not None, "jobs are never deleted"
    return fresh


def _base(deps: FineTuningDeps, record: FineTuningJobRecord) -> Base:
    return resolve_base(deps.catalog, record.model, record.job_type, deps.encoder)


# -- validation ---------------------------------------------------------------------------------------------------
async def _validate(record: FineTuningJobRecord, deps: FineTuningDeps) -> FineTuningJobRecord:
    if record.status == "QUEUED" and not await run_sync(
            lambda: deps.repo.transition(record.id, "VALIDATING", deps.now(), only_if=("QUEUED",))):
        return await _reload(deps, record)  # cancelled meanwhile
    try:
        found = await run_sync(_inspect, deps, record)
    except (Unusable, GatewayError) as exc:
        await run_sync(_end, deps, record, "FAILED_VALIDATION", str(exc))
        return await _reload(deps, record)
    except (RuntimeError, OSError) as exc:  # the base could not be prepared: not the data's fault
        await run_sync(_end, deps, record, "FAILED", str(exc))
        return await _reload(deps, record)
    await run_sync(_record_validation, deps, record, found)
    return await _reload(deps, record)


def _inspect(deps: FineTuningDeps, record: FineTuningJobRecord) -> Inspection:
    training = [f["file_id"] for f in record.training_files]
    return inspect(deps, record.workspace_id, _base(deps, record), record.hyperparameters, training,
                   record.validation_files, record.classifier_targets, deps.run_dir(record.id))


def _record_validation(deps: FineTuningDeps, record: FineTuningJobRecord, found: Inspection) -> None:
    now = deps.now()
    events = [EventRecord("invalid-sample", {"file_id": b.file_id, "filename": b.filename, "line": b.line,
                                             "error": b.error}, now)
              for b in (*found.train.bad, *found.valid.bad)]
    unreported = found.bad_count - len(events)
    if unreported > 0:
        events.append(EventRecord("invalid-samples-not-listed", {"count": unreported}, now))
    if not any(e.name == "invalid-sample" for e in deps.repo.events(record.id)):  # a redone validation: once
        deps.repo.add_events(record.id, events)
    allowed = record.invalid_sample_skip_percentage
    problem = None
    if found.train.lines == 0:
        problem = "no valid training line"
    elif found.bad_count > allowed * found.total:
        problem = (f"{found.bad_count} of {found.total} lines are invalid (see the invalid-sample events); "
                   f"invalid_sample_skip_percentage {allowed} allows {int(allowed * found.total)}")
    if problem is not None:
        _end(deps, record, "FAILED_VALIDATION", problem)
        return
    metadata = estimate(record.job_type, record.hyperparameters, found.train, found.base_bytes, now)
    inferred = {"classifier_targets": target_dicts(found.inferred_targets)} if found.inferred_targets else {}
    if not deps.repo.transition(record.id, "VALIDATED", now, only_if=("VALIDATING",),
                                data={"skipped_lines": found.bad_count},
                                metadata={k: v for k, v in metadata.items() if k not in ("epochs", "training_steps")},
                                **inferred):
        _end(deps, record, "CANCELLED")  # a cancel came while the lines were checked


def _end(deps: FineTuningDeps, record: FineTuningJobRecord, status: str, message: str | None = None) -> None:
    """A terminal status from any non-terminal one; a requested cancel wins over a failure."""
    now, data = deps.now(), ({"message": message} if message else None)
    if status != "CANCELLED" and deps.repo.transition(record.id, "CANCELLED", now,
                                                      only_if=("CANCELLATION_REQUESTED",), data=data):
        return
    deps.repo.transition(record.id, status, now, only_if=("QUEUED", "VALIDATING", "VALIDATED", *TRAINING), data=data)


# -- training -----------------------------------------------------------------------------------------------------
class _Training:
    def __init__(self, record: FineTuningJobRecord, deps: FineTuningDeps) -> None:
        self.record, self.deps = record, deps
        self.run_dir = deps.run_dir(record.id)
        self.engine: Any = deps.classifier_trainer() if record.job_type == "classifier" else deps.trainer
        self.resumes = 0
        self.cancel_sent = False

    async def run(self) -> None:
        record, deps = self.record, self.deps
        if self.engine is None:
            await run_sync(_end, deps, record, "FAILED", "classifier training is not available in this build: no "
                           "classifier trainer is configured")
            return
        try:
            base = _base(deps, record)
            spec = await run_sync(self._spec, base)
        except (Unusable, GatewayError) as exc:
            await run_sync(_end, deps, record, "FAILED", str(exc))
            return
        handle = TrainingHandle(str(self.run_dir), record.trainer_pid) if record.trainer_pid else None
        if handle is None:
            if record.status == "CANCELLATION_REQUESTED":
                await run_sync(_end, deps, record, "CANCELLED")
                return
            handle = await self._start(spec)
        while True:
            progress = await run_sync(self.engine.progress, handle)
            status = await run_sync(self._observe, progress)
            if progress.state == "running":
                if (status == "CANCELLATION_REQUESTED" or status in TERMINAL_STATUSES) and not self.cancel_sent:
                    await run_sync(self.engine.cancel, handle)
                    self.cancel_sent = True
                if status in TERMINAL_STATUSES:
                    return  # ended elsewhere (its runner gave up): nothing may train for it any more
                await asyncio.sleep(deps.poll_seconds)
            elif progress.state == "crashed" and status != "CANCELLATION_REQUESTED" \
                    and self.resumes < deps.max_resumes:
                self.resumes += 1
                await run_sync(lambda: deps.repo.add_events(record.id, [EventRecord(
                    "training-resumed", {"reason": "the trainer stopped without finishing", "resume": self.resumes},
                    deps.now())]))
                handle = await self._start(spec)
            else:
                await self._finish(progress, base)
                return

    async def _start(self, spec: Any) -> TrainingHandle:
        try:
            handle: TrainingHandle = await run_sync(self.engine.start, spec)
        except EngineBusy:
            # a worker an earlier handler started still runs there (that handler died before saving its pid): the
            # LocalTrainer names it in the run directory; watch it rather than start a second one
            pid = _worker_pid(self.run_dir)
            if pid is None:
                raise
            handle = TrainingHandle(str(self.run_dir), pid)
        await run_sync(lambda: self.deps.repo.update(self.record.id, trainer_pid=handle.pid))
        return handle

    def _spec(self, base: Base) -> TrainingSpec | ClassifierTrainingSpec:
        hp, record, data = self.record.hyperparameters, self.record, self.run_dir / "data"
        train = tuple(str(data / f"train-{n}.jsonl") for n in range(len(record.training_files)))
        valid = tuple(str(data / f"valid-{n}.jsonl") for n in range(len(record.validation_files)))
        common: dict[str, Any] = {"training_files": train, "validation_files": valid, "run_dir": str(self.run_dir),
                                  "training_steps": hp.get("training_steps"), "learning_rate": hp["learning_rate"]}
        if hp.get("weight_decay") is not None:
            common["weight_decay"] = hp["weight_decay"]
        if hp.get("warmup_fraction") is not None:
            common["warmup_fraction"] = hp["warmup_fraction"]
        if record.job_type == "classifier":
            assert base.encoder is not None
            return ClassifierTrainingSpec(encoder=base.encoder.id, targets=targets_of(record.classifier_targets),
                                          epochs=hp.get("epochs"), seq_len=hp.get("seq_len"), **common)
        gguf = self.deps.locate(base.entry)
        if gguf is None:
            raise Unusable(f"the weights of {record.model!r} are not available here")
        return TrainingSpec(base_gguf=str(gguf), cache_dir=str(self.deps.data_dir / "training" / "bases"),
                            epochs=float(hp.get("epochs") or 1.0), seq_len=int(hp.get("seq_len") or DEFAULT_SEQ_LEN),
                            threads=self.deps.threads, fim_ratio=float(hp.get("fim_ratio") or 0.0),
                            fim_template=base.entry.fim_template, **common)

    def _observe(self, progress: TrainingProgress) -> str:
        """Record new checkpoints; STARTED becomes RUNNING once the trainer runs. Returns the job's status."""
        repo, record, now = self.deps.repo, self.record, self.deps.now()
        known = repo.checkpoint_steps(record.id)
        for event in progress.events:
            if event.kind == "checkpoint" and event.step not in known:
                repo.add_checkpoint(record.id, CheckpointRecord(event.step, _metrics(event), now))
                known.add(event.step)
        if progress.state == "running":
            repo.transition(record.id, "RUNNING", now, only_if=("STARTED",))
        current = repo.get(record.id)
        return current.status if current is not None else "CANCELLED"

    async def _finish(self, progress: TrainingProgress, base: Base) -> None:
        deps, record = self.deps, self.record
        if progress.state == "succeeded":
            try:
                await self._succeed(progress, base)
            except (OSError, ValueError) as exc:
                await run_sync(_end, deps, record, "FAILED", f"registering the trained model failed: {exc}")
            return
        if progress.state == "cancelled":
            await run_sync(_end, deps, record, "CANCELLED")
            return
        message = next((e.message for e in reversed(progress.events) if e.kind == "failed" and e.message), None)
        if progress.state == "crashed":
            message = (f"the trainer stopped without finishing {self.resumes + 1} time(s); "
                       f"see {self.run_dir / 'worker.log'}")
        await run_sync(_end, deps, record, "FAILED", message or "training failed")

    async def _succeed(self, progress: TrainingProgress, base: Base) -> None:
        deps, record = self.deps, self.record
        if progress.adapter is None:
            raise ValueError("the trainer reported success without a result file")
        artifact = Path(progress.adapter)
        if record.job_type == "completion":
            artifact = self.run_dir / "model.gguf"
            if not artifact.is_file():  # merged at base speed (docs/training.md); done once, atomically
                gguf = deps.locate(base.entry)
                assert gguf is not None, "checked when the spec was built"
                await run_sync(deps.merge, gguf, Path(progress.adapter), artifact)
        model_id = fine_tuned_id(record.job_type, record.model, record.suffix, record.id, record.created_at)
        steps = progress.total_steps or max((e.step for e in progress.events), default=0)
        per_step = (record.metadata or {}).get("train_tokens_per_step")

        def register() -> None:
            if deps.models.get(record.workspace_id, model_id) is None:
                deps.models.add(FineTunedModelRecord(
                    id=model_id, workspace_id=record.workspace_id, root=record.model, job_id=record.id, name=None,
                    description=None, archived=False, capabilities=base.capabilities,
                    max_context_length=base.max_context_length, created_at=deps.now(), job_type=record.job_type,
                    artifact=os.path.relpath(artifact, deps.data_dir)))
            deps.repo.transition(record.id, "SUCCESS", deps.now(), only_if=TRAINING,
                                 data={"fine_tuned_model": model_id}, fine_tuned_model=model_id,
                                 trained_tokens=per_step * steps if per_step else None)

        await run_sync(register)


def _worker_pid(run_dir: Path) -> int | None:
    try:
        return int((run_dir / "worker.pid").read_text())  # engines/trainer.py writes it beside the run's state
    except (OSError, ValueError):
        return None


def _metrics(event: TrainingEvent) -> dict[str, Any]:
    metrics: dict[str, Any] = {"train_loss": event.train_loss, "valid_loss": event.valid_loss,
                               "valid_mean_token_accuracy": event.valid_mean_token_accuracy}
    if event.metrics:
        metrics["targets"] = event.metrics
    return metrics
