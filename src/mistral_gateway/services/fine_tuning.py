"""Fine-tuning jobs: create (or estimate: dry run), list, get, start, cancel. The work itself runs on the durable
job runner (kind ``fine_tuning``: ``services.fine_tuning_run``); ``handler`` is what the runner calls.

Blocking methods (database, file reads): the application layer calls them off the event loop.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from mistral_gateway.echo import shorten
from mistral_gateway.errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from mistral_gateway.protocol.fine_tuning import (
    TERMINAL_STATUSES,
    CheckpointOut,
    ClassifierDetailedJobOut,
    ClassifierJobOut,
    CompletionDetailedJobOut,
    CompletionJobOut,
    DetailedJobOut,
    EventOut,
    JobIn,
    JobOut,
    JobsOut,
    LegacyJobMetadataOut,
    ListJobsQuery,
    TrainingFile,
)
from mistral_gateway.services.batch_run import JobContextLike
from mistral_gateway.services.fine_tuning_bases import resolve_base
from mistral_gateway.services.fine_tuning_data import estimate
from mistral_gateway.services.fine_tuning_deps import JOB_KIND, FineTuningDeps, Unusable, inspect, targets_of
from mistral_gateway.services.fine_tuning_run import run_fine_tuning
from mistral_gateway.storage.fine_tuning import EventRecord, FineTuningFilter, FineTuningJobRecord
from mistral_gateway.storage.jobs import JobStatus
from mistral_gateway.training.classifier_head import check_targets

__all__ = ["JOB_KIND", "UNREACHABLE_LOGGERS", "FineTuningService"]

UNREACHABLE_LOGGERS = ("external loggers (wandb) are not reachable from this deployment: the integration is stored "
                       "and shown, nothing is sent to it, and its api_key is not kept")


class FineTuningService:
    def __init__(self, deps: FineTuningDeps) -> None:
        self.deps = deps
        self._repo = deps.repo

    async def handler(self, ctx: JobContextLike) -> None:
        await run_fine_tuning(ctx, self.deps)

    # -- create -------------------------------------------------------------------------------------------------
    def create(self, workspace_id: str, token_id: str | None, request: JobIn,
               dry_run: bool = False) -> JobOut | LegacyJobMetadataOut:
        job_type = self._check(workspace_id, request)
        base = resolve_base(self.deps.catalog, request.model, job_type, self.deps.encoder)
        training = [_file(f).file_id for f in request.training_files]
        hp = request.hyperparameters.model_dump()
        targets = [t.model_dump() for t in request.classifier_targets or ()] or None
        if dry_run:
            try:
                found = inspect(self.deps, workspace_id, base, hp, training, list(request.validation_files or ()),
                                targets)
            except Unusable as exc:
                raise BadRequest(str(exc), param="training_files", code="INVALID_TRAINING_FILE") from None
            except (RuntimeError, OSError) as exc:  # the base model could not be prepared: not the caller's fault
                raise ServiceUnavailable(f"cannot estimate now: {exc}", code="BASE_NOT_READY") from None
            figures = estimate(job_type, hp, found.train, found.base_bytes, self.deps.now())
            return LegacyJobMetadataOut(details=_details(found.train.lines, found.bad_count, found.total), **figures)
        now = self.deps.now()
        integrations = [i.model_dump(exclude={"api_key"}) for i in request.integrations or ()]
        job_id = str(uuid.uuid4())  # also the id of its first runner job (the validation)
        record = FineTuningJobRecord(
            id=job_id, workspace_id=workspace_id, token_id=token_id, model=request.model,
            job_type=job_type, status="QUEUED", auto_start=request.auto_start, suffix=request.suffix or None,
            hyperparameters=hp, training_files=[_file(f).model_dump() for f in request.training_files],
            validation_files=list(request.validation_files or ()), integrations=integrations,
            classifier_targets=targets, invalid_sample_skip_percentage=request.invalid_sample_skip_percentage,
            created_at=now, modified_at=now, wandb_project=integrations[0]["project"] if integrations else None,
            wandb_name=integrations[0].get("name") if integrations else None, runner_job_id=job_id)
        self._repo.add(record, EventRecord("status-updated", {"status": "QUEUED"}, now))
        if integrations:
            self._repo.add_events(record.id, [EventRecord("integrations-unreachable",
                                                          {"message": UNREACHABLE_LOGGERS}, now)])
        self.deps.submit(workspace_id, {"job_id": job_id}, job_id)
        return _out(record)

    def _check(self, workspace_id: str, request: JobIn) -> str:
        if request.repositories:
            raise BadRequest("repositories are not supported here: this deployment cannot reach GitHub; upload the "
                             "training data as files (purpose fine-tune) instead", param="repositories",
                             code="REPOSITORIES_UNSUPPORTED")
        # a classifier job without classifier_targets reads them from its training lines when they are validated
        job_type = request.job_type or ("classifier" if request.classifier_targets else "completion")
        if job_type == "completion" and request.classifier_targets:
            raise BadRequest("classifier_targets belong to classifier jobs (job_type 'classifier')",
                             param="classifier_targets")
        names = [t.name for t in request.classifier_targets or ()]
        if len(set(names)) != len(names):
            raise BadRequest("classifier_targets: each target needs a name of its own", param="classifier_targets")
        if request.classifier_targets:
            try:  # what the head file can hold (label names, two labels at least for a single_class target...)
                check_targets(targets_of([t.model_dump() for t in request.classifier_targets]))
            except ValueError as exc:
                raise BadRequest(f"classifier_targets: {exc}", param="classifier_targets",
                                 code="INVALID_CLASSIFIER_TARGETS") from None
        if not request.training_files:
            raise BadRequest("training_files must name at least one file", param="training_files")
        ids = [_file(f).file_id for f in request.training_files] + list(request.validation_files or ())
        for file_id in ids:
            self._check_file(workspace_id, file_id)
        return job_type

    def _check_file(self, workspace_id: str, file_id: str) -> None:
        record = self.deps.files.get(workspace_id, file_id, self.deps.now()) if _is_uuid(file_id) else None
        if record is None:
            raise BadRequest(f"file {shorten(file_id)!r} not found", param="training_files",
                             code="INVALID_TRAINING_FILE")
        if record.purpose != "fine-tune":
            raise BadRequest(f"file {file_id} has purpose {record.purpose!r}; upload it with purpose 'fine-tune'",
                             param="training_files", code="INVALID_TRAINING_FILE")

    # -- read ---------------------------------------------------------------------------------------------------
    def list(self, workspace_id: str, token_id: str | None, query: ListJobsQuery) -> JobsOut:
        flt = FineTuningFilter(model=query.model, created_after=_seconds(query.created_after),
                               created_before=_seconds(query.created_before),
                               token_id=token_id if query.created_by_me else None, status=query.status,
                               wandb_project=query.wandb_project, wandb_name=query.wandb_name, suffix=query.suffix)
        rows, total = self._repo.list(workspace_id, flt, offset=query.page * query.page_size, limit=query.page_size)
        return JobsOut(data=[_out(self._reconciled(r)) for r in rows], total=total)

    def get(self, workspace_id: str, job_id: str) -> DetailedJobOut:
        return self._detailed(self._reconciled(self._get(workspace_id, job_id)))

    # -- start and cancel ---------------------------------------------------------------------------------------
    def start(self, workspace_id: str, job_id: str) -> DetailedJobOut:
        record = self._reconciled(self._get(workspace_id, job_id))
        runner = str(uuid.uuid4())
        if not self._repo.transition(record.id, "STARTED", self.deps.now(), only_if=("VALIDATED",),
                                     runner_job_id=runner):
            current = self._get(workspace_id, job_id)
            hint = " (auto_start started it)" if current.status in ("STARTED", "RUNNING") else ""
            raise Conflict(f"job {job_id} is {current.status}{hint}; only a VALIDATED job can be started",
                           param="job_id", code="JOB_NOT_STARTABLE")
        self.deps.submit(workspace_id, {"job_id": record.id}, runner)
        return self.get(workspace_id, job_id)

    def cancel(self, workspace_id: str, job_id: str) -> DetailedJobOut:
        record = self._get(workspace_id, job_id)
        now = self.deps.now()
        # nothing runs for a queued or validated job: cancelled at once (a queued handler then finds it so);
        # while lines are checked or a trainer runs, the handler stops it within seconds
        if not self._repo.transition(record.id, "CANCELLED", now, only_if=("QUEUED", "VALIDATED")):
            self._repo.transition(record.id, "CANCELLATION_REQUESTED", now,
                                  only_if=("VALIDATING", "STARTED", "RUNNING"))
        return self.get(workspace_id, job_id)

    def _get(self, workspace_id: str, job_id: str) -> FineTuningJobRecord:
        record = self._repo.get(job_id, workspace_id) if _is_uuid(job_id) else None
        if record is None:
            raise NotFound(f"fine-tuning job {shorten(job_id)!r} not found", param="job_id", code="JOB_NOT_FOUND")
        return record

    def _reconciled(self, record: FineTuningJobRecord) -> FineTuningJobRecord:
        """A job whose durable runner job ended without ending it (it ran out of attempts: the server died each
        time) shows FAILED with the runner's reason, rather than running forever."""
        if record.status in TERMINAL_STATUSES or record.status == "VALIDATED" or record.runner_job_id is None:
            return record
        runner = self.deps.jobs.get(record.workspace_id, record.runner_job_id) if self.deps.jobs else None
        if runner is None or runner.status not in (JobStatus.FAILED, JobStatus.SUCCEEDED, JobStatus.CANCELLED):
            return record
        status = "CANCELLED" if record.status == "CANCELLATION_REQUESTED" else "FAILED"
        reason = runner.error or "the job's worker ended without finishing it"
        self._repo.transition(record.id, status, self.deps.now(), only_if=(record.status,), data={"message": reason})
        return self._repo.get(record.id) or record

    def _detailed(self, record: FineTuningJobRecord) -> DetailedJobOut:
        events = [EventOut(name=e.name, data=e.data, created_at=e.created_at) for e in self._repo.events(record.id)]
        checkpoints = [CheckpointOut(metrics=c.metrics, step_number=c.step_number, created_at=c.created_at)
                       for c in self._repo.checkpoints(record.id)]
        fields = {**_fields(record), "events": events, "checkpoints": checkpoints}
        if record.job_type == "classifier":
            return ClassifierDetailedJobOut(**fields)
        return CompletionDetailedJobOut(**fields)


def _file(item: TrainingFile | str) -> TrainingFile:
    return item if isinstance(item, TrainingFile) else TrainingFile(file_id=item)


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _seconds(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def _details(lines: int, bad: int, total: int) -> str:
    note = f"; {bad} of {total} lines are invalid (a job lists each with its line number)" if bad else ""
    return (f"{lines} valid training lines{note}. Estimates from this server's measured training speed; "
            "cost 0: training runs locally")


def _fields(record: FineTuningJobRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": record.id, "auto_start": record.auto_start, "model": record.model, "status": record.status,
        "created_at": record.created_at, "modified_at": record.modified_at,
        "training_files": [f["file_id"] for f in record.training_files],
        "validation_files": record.validation_files, "fine_tuned_model": record.fine_tuned_model,
        "suffix": record.suffix, "integrations": record.integrations or None, "trained_tokens": record.trained_tokens,
        "metadata": record.metadata, "hyperparameters": _hyperparameters(record)}
    if record.job_type == "classifier":
        fields["classifier_targets"] = [{**t, "loss_function": t.get("loss_function") or "single_class"}
                                        for t in record.classifier_targets or ()]
    return fields


def _hyperparameters(record: FineTuningJobRecord) -> dict[str, Any]:
    hp = dict(record.hyperparameters)
    if record.job_type == "classifier":
        hp.pop("fim_ratio", None)
    return hp


def _out(record: FineTuningJobRecord) -> JobOut:
    if record.job_type == "classifier":
        return ClassifierJobOut(**_fields(record))
    return CompletionJobOut(**_fields(record))
