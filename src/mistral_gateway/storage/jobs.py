"""Durable jobs: rows in the project's own database, claimed with a lease.

A worker claims the oldest QUEUED job of the kinds it handles and holds it RUNNING while its lease lasts, renewing
the lease by heartbeat. Each claim gets a fresh ``lease_id``; every later write by the owner (heartbeat,
checkpoint, finish, release) is conditioned on it, so a worker that lost its lease (it stalled, and another worker
took the job over) changes nothing. A lease that lapses (its worker died) puts the job back in the queue, or ends it
FAILED with a reason once it has used ``max_attempts`` claims, or CANCELLED if a cancel was asked for meanwhile: no
job stays RUNNING without a live worker.

The claim is one conditional ``UPDATE ... WHERE id = (SELECT ... LIMIT 1 FOR UPDATE SKIP LOCKED)``: on PostgreSQL
concurrent claimers skip each other's locked rows; SQLite ignores the locking clause, and the statement (the first
of its transaction) runs under SQLite's single write lock. Either way two workers never hold one job.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.tables import JobRow

__all__ = ["ACTIVE", "FINISHED", "Heartbeat", "JobRecord", "JobRepository", "JobStatus"]


class JobStatus:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    workspace_id: str
    kind: str
    status: str
    payload: dict[str, Any]
    checkpoint: dict[str, Any] | None
    error: str | None
    attempts: int
    max_attempts: int
    cancel_requested: bool
    worker_id: str | None
    lease_id: str | None
    lease_expires_at: float | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class Heartbeat:
    owned: bool  # False: the lease is gone (lapsed and taken over, or the job was ended elsewhere)
    cancel_requested: bool


class JobRepository:
    def __init__(self, db: Database, *, max_attempts: int = 3) -> None:
        self._db = db
        self.max_attempts = max_attempts  # claims a job may use unless its enqueue says otherwise

    def enqueue(self, workspace_id: str, kind: str, payload: dict[str, Any], *, now: float,
                max_attempts: int | None = None, job_id: str | None = None) -> JobRecord:
        row = self.new_row(workspace_id, kind, payload, now=now, max_attempts=max_attempts, job_id=job_id)
        with self._db.session() as s:
            s.add(row)
            s.flush()
            return _record(row)

    def new_row(self, workspace_id: str, kind: str, payload: dict[str, Any], *, now: float,
                max_attempts: int | None = None, job_id: str | None = None) -> JobRow:
        """A queued job's row, not yet saved: a caller adds it in its own transaction, so the job exists exactly
        when the record it works on does (then ``JobRunner.notify``)."""
        max_attempts = self.max_attempts if max_attempts is None else max_attempts
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        return JobRow(id=job_id or str(uuid.uuid4()), workspace_id=workspace_id, kind=kind, status=JobStatus.QUEUED,
                      payload=payload, checkpoint=None, error=None, attempts=0, max_attempts=max_attempts,
                      cancel_requested=False, worker_id=None, lease_id=None, lease_expires_at=None, created_at=now,
                      started_at=None, finished_at=None, updated_at=now)

    def has_work(self, kinds: Collection[str], now: float) -> bool:
        """A cheap read before ``claim``: idle workers poll with this, so an empty queue takes no write lock."""
        if not kinds:
            return False
        with self._db.session() as s:
            found = s.scalar(select(JobRow.id).where(or_(
                and_(JobRow.status == JobStatus.QUEUED, JobRow.kind.in_(list(kinds))), _lapsed(now))).limit(1))
        return found is not None

    def queued_by_kind(self) -> dict[str, int]:
        """Jobs waiting to run, by kind (the metrics' queue depth: one grouped count at scrape time)."""
        with self._db.session() as s:
            rows = s.execute(select(JobRow.kind, func.count()).where(JobRow.status == JobStatus.QUEUED)
                             .group_by(JobRow.kind)).all()
        return {kind: int(count) for kind, count in rows}

    def claim(self, worker_id: str, kinds: Collection[str], lease_seconds: float, now: float) -> JobRecord | None:
        """Take the oldest queued job of ``kinds`` for ``lease_seconds`` (lapsed leases are recovered first)."""
        if not kinds:
            return None
        lease_id = str(uuid.uuid4())
        with self._db.session() as s:
            self._recover(s, now)
            oldest = (select(JobRow.id).where(JobRow.status == JobStatus.QUEUED, JobRow.kind.in_(list(kinds)))
                      .order_by(JobRow.created_at, JobRow.id).limit(1).with_for_update(skip_locked=True)
                      .scalar_subquery())
            taken = s.execute(update(JobRow).where(JobRow.id == oldest, JobRow.status == JobStatus.QUEUED).values(
                status=JobStatus.RUNNING, worker_id=worker_id, lease_id=lease_id,
                lease_expires_at=now + lease_seconds, attempts=JobRow.attempts + 1,
                started_at=func.coalesce(JobRow.started_at, now), updated_at=now,
            ).execution_options(synchronize_session=False)).rowcount
            if not taken:
                return None
            row = s.scalar(select(JobRow).where(JobRow.lease_id == lease_id))
            return _record(row) if row else None

    def recover(self, now: float) -> int:
        """Requeue, fail or cancel every RUNNING job whose lease lapsed; returns how many changed."""
        with self._db.session() as s:
            return self._recover(s, now)

    def heartbeat(self, job_id: str, lease_id: str, lease_seconds: float, now: float) -> Heartbeat:
        with self._db.session() as s:
            owned = s.execute(update(JobRow).where(*_owner(job_id, lease_id)).values(
                lease_expires_at=now + lease_seconds, updated_at=now)).rowcount > 0
            cancel = s.scalar(select(JobRow.cancel_requested).where(JobRow.id == job_id))
        return Heartbeat(owned, bool(cancel))

    def save_checkpoint(self, job_id: str, lease_id: str, data: dict[str, Any], now: float) -> bool:
        with self._db.session() as s:
            return s.execute(update(JobRow).where(*_owner(job_id, lease_id)).values(
                checkpoint=data, updated_at=now)).rowcount > 0

    def finish(self, job_id: str, lease_id: str, status: str, now: float, error: str | None = None) -> bool:
        """End a job the caller owns: SUCCEEDED, FAILED (with ``error``) or CANCELLED."""
        if status not in FINISHED:
            raise ValueError(f"not a final status: {status!r}")
        with self._db.session() as s:
            return s.execute(update(JobRow).where(*_owner(job_id, lease_id)).values(
                status=status, error=error, finished_at=now, updated_at=now, **_NO_LEASE)).rowcount > 0

    def release(self, job_id: str, lease_id: str, now: float) -> bool:
        """Give a running job back to the queue (a worker stopping): the claim does not count as an attempt."""
        with self._db.session() as s:
            return s.execute(update(JobRow).where(*_owner(job_id, lease_id)).values(
                status=JobStatus.QUEUED, attempts=JobRow.attempts - 1, updated_at=now, **_NO_LEASE)).rowcount > 0

    def request_cancel(self, workspace_id: str, job_id: str, now: float) -> JobRecord | None:
        """A queued job ends CANCELLED at once; a running one is flagged, and its worker stops it (within a
        heartbeat). Finished jobs stay as they are. None: no such job in this workspace."""
        mine = (JobRow.id == job_id, JobRow.workspace_id == workspace_id)
        with self._db.session() as s:
            s.execute(update(JobRow).where(*mine, JobRow.status == JobStatus.QUEUED).values(
                status=JobStatus.CANCELLED, cancel_requested=True, finished_at=now, updated_at=now))
            s.execute(update(JobRow).where(*mine, JobRow.status == JobStatus.RUNNING).values(
                cancel_requested=True, updated_at=now))
            row = s.scalar(select(JobRow).where(*mine))
            return _record(row) if row else None

    def get(self, workspace_id: str, job_id: str) -> JobRecord | None:
        with self._db.session() as s:
            row = s.scalar(select(JobRow).where(JobRow.id == job_id, JobRow.workspace_id == workspace_id))
            return _record(row) if row else None

    def list(self, workspace_id: str, *, kind: str | None = None, statuses: Collection[str] = (), offset: int = 0,
             limit: int = 100, with_total: bool = False) -> tuple[list[JobRecord], int | None]:
        """Newest first."""
        query = select(JobRow).where(JobRow.workspace_id == workspace_id)
        if kind is not None:
            query = query.where(JobRow.kind == kind)
        if statuses:
            query = query.where(JobRow.status.in_(list(statuses)))
        with self._db.session() as s:
            total = s.scalar(select(func.count()).select_from(query.subquery())) if with_total else None
            rows = s.scalars(query.order_by(JobRow.created_at.desc(), JobRow.id).offset(offset).limit(limit))
            return [_record(r) for r in rows], total

    def _recover(self, s: Session, now: float) -> int:
        def lapsed(*extra: Any) -> Any:
            # Row locks skipped, as in claim: two recovering workers never wait on (or deadlock over) each other.
            return JobRow.id.in_(select(JobRow.id).where(_lapsed(now), *extra).with_for_update(skip_locked=True))

        changed = s.execute(update(JobRow).where(lapsed(JobRow.cancel_requested.is_(True))).values(
            status=JobStatus.CANCELLED, finished_at=now, updated_at=now, **_NO_LEASE)).rowcount
        changed += s.execute(update(JobRow).where(lapsed(JobRow.attempts >= JobRow.max_attempts)).values(
            status=JobStatus.FAILED, finished_at=now, updated_at=now, **_NO_LEASE,
            error="the job's worker stopped answering (its lease expired) on each of its attempts; "
                  "attempts exhausted").execution_options(synchronize_session=False)).rowcount
        changed += s.execute(update(JobRow).where(lapsed()).values(
            status=JobStatus.QUEUED, updated_at=now, **_NO_LEASE)).rowcount
        return changed


_NO_LEASE: dict[str, Any] = {"worker_id": None, "lease_id": None, "lease_expires_at": None}


def _lapsed(now: float) -> Any:
    return and_(JobRow.status == JobStatus.RUNNING, JobRow.lease_expires_at < now)


def _owner(job_id: str, lease_id: str) -> tuple[Any, ...]:
    return JobRow.id == job_id, JobRow.lease_id == lease_id, JobRow.status == JobStatus.RUNNING


def _record(row: JobRow) -> JobRecord:
    return JobRecord(**{f.name: getattr(row, f.name) for f in dataclasses.fields(JobRecord)})
