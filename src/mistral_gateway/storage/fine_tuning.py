"""Fine-tuning job rows with their events and checkpoints; API reads always filter by workspace (another
workspace's job is simply not found)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.tables import FineTuningCheckpointRow, FineTuningEventRow, FineTuningJobRow

__all__ = ["CheckpointRecord", "EventRecord", "FineTuningFilter", "FineTuningJobRecord", "FineTuningRepository"]


@dataclass(frozen=True, slots=True)
class FineTuningJobRecord:
    id: str
    workspace_id: str
    token_id: str | None
    model: str
    job_type: str
    status: str
    auto_start: bool
    suffix: str | None
    hyperparameters: dict[str, Any]
    training_files: list[dict[str, Any]]
    validation_files: list[str]
    integrations: list[dict[str, Any]]
    classifier_targets: list[dict[str, Any]] | None
    invalid_sample_skip_percentage: float
    created_at: int
    modified_at: int
    wandb_project: str | None = None
    wandb_name: str | None = None
    metadata: dict[str, Any] | None = None
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    runner_job_id: str | None = None
    trainer_pid: int | None = None


@dataclass(frozen=True, slots=True)
class EventRecord:
    name: str
    data: dict[str, Any] | None
    created_at: int


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    step_number: int
    metrics: dict[str, Any]
    created_at: int


@dataclass(frozen=True, slots=True)
class FineTuningFilter:
    model: str | None = None
    created_after: int | None = None
    created_before: int | None = None
    token_id: str | None = None  # created_by_me
    status: str | None = None
    wandb_project: str | None = None
    wandb_name: str | None = None
    suffix: str | None = None


_COLUMNS = {f.name: ("metadata_" if f.name == "metadata" else f.name)
            for f in dataclasses.fields(FineTuningJobRecord)}
_EQUAL = ("model", "token_id", "status", "wandb_project", "wandb_name", "suffix")


class FineTuningRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, record: FineTuningJobRecord, event: EventRecord | None = None) -> None:
        with self._db.session() as s:
            s.add(FineTuningJobRow(**{_COLUMNS[k]: v for k, v in dataclasses.asdict(record).items()}))
            if event is not None:
                s.flush()
                s.add(FineTuningEventRow(job_id=record.id, name=event.name, data=event.data,
                                         created_at=event.created_at))

    def get(self, job_id: str, workspace_id: str | None = None) -> FineTuningJobRecord | None:
        """``workspace_id`` None: any workspace (the job handler's read)."""
        query = select(FineTuningJobRow).where(FineTuningJobRow.id == job_id)
        if workspace_id is not None:
            query = query.where(FineTuningJobRow.workspace_id == workspace_id)
        with self._db.session() as s:
            row = s.scalar(query)
            return _record(row) if row else None

    def list(self, workspace_id: str, flt: FineTuningFilter, *, offset: int,
             limit: int) -> tuple[list[FineTuningJobRecord], int]:
        query = select(FineTuningJobRow).where(FineTuningJobRow.workspace_id == workspace_id)
        for name in _EQUAL:
            value = getattr(flt, name)
            if value is not None:
                query = query.where(getattr(FineTuningJobRow, name) == value)
        if flt.created_after is not None:
            query = query.where(FineTuningJobRow.created_at >= flt.created_after)
        if flt.created_before is not None:
            query = query.where(FineTuningJobRow.created_at <= flt.created_before)
        with self._db.session() as s:
            total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = s.scalars(query.order_by(FineTuningJobRow.created_at.desc(), FineTuningJobRow.id.desc())
                             .offset(offset).limit(limit))
            return [_record(r) for r in rows], total

    def transition(self, job_id: str, status: str, now: int, *, only_if: tuple[str, ...] = (),
                   data: dict[str, Any] | None = None, **values: Any) -> bool:
        """Set the status (and ``values``) and record a ``status-updated`` event, in one transaction; with
        ``only_if``, only while the status is one of those (a compare-and-set: False when it was not)."""
        stmt = update(FineTuningJobRow).where(FineTuningJobRow.id == job_id)
        if only_if:
            stmt = stmt.where(FineTuningJobRow.status.in_(only_if))
        with self._db.session() as s:
            changed = s.execute(stmt.values(status=status, modified_at=now,
                                            **{_COLUMNS[k]: v for k, v in values.items()})).rowcount > 0
            if changed:
                s.add(FineTuningEventRow(job_id=job_id, name="status-updated", data={"status": status, **(data or {})},
                                         created_at=now))
            return changed

    def update(self, job_id: str, **values: Any) -> None:
        with self._db.session() as s:
            s.execute(update(FineTuningJobRow).where(FineTuningJobRow.id == job_id)
                      .values(**{_COLUMNS[k]: v for k, v in values.items()}))

    def add_events(self, job_id: str, events: list[EventRecord]) -> None:
        with self._db.session() as s:
            s.add_all([FineTuningEventRow(job_id=job_id, name=e.name, data=e.data, created_at=e.created_at)
                       for e in events])

    def events(self, job_id: str) -> list[EventRecord]:
        """Newest first (as Mistral lists them)."""
        with self._db.session() as s:
            rows = s.scalars(select(FineTuningEventRow).where(FineTuningEventRow.job_id == job_id)
                             .order_by(FineTuningEventRow.id.desc()))
            return [EventRecord(r.name, r.data, r.created_at) for r in rows]

    def add_checkpoint(self, job_id: str, checkpoint: CheckpointRecord) -> bool:
        """False when the step is recorded already (a resumed run reports its last checkpoint again)."""
        try:
            with self._db.session() as s:
                s.add(FineTuningCheckpointRow(job_id=job_id, step_number=checkpoint.step_number,
                                              metrics=checkpoint.metrics, created_at=checkpoint.created_at))
        except IntegrityError:
            return False
        return True

    def checkpoint_steps(self, job_id: str) -> set[int]:
        with self._db.session() as s:
            return set(s.scalars(select(FineTuningCheckpointRow.step_number)
                                 .where(FineTuningCheckpointRow.job_id == job_id)))

    def checkpoints(self, job_id: str) -> list[CheckpointRecord]:
        """Newest step first."""
        with self._db.session() as s:
            rows = s.scalars(select(FineTuningCheckpointRow).where(FineTuningCheckpointRow.job_id == job_id)
                             .order_by(FineTuningCheckpointRow.step_number.desc()))
            return [CheckpointRecord(r.step_number, r.metrics, r.created_at) for r in rows]


def _record(row: FineTuningJobRow) -> FineTuningJobRecord:
    return FineTuningJobRecord(**{name: getattr(row, col) for name, col in _COLUMNS.items()})
