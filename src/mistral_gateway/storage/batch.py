"""Batch job rows, always filtered by workspace for API reads (another workspace's job is simply not found)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.metadata_filter import matching_page
from mistral_gateway.storage.tables import BatchJobRow

__all__ = ["BatchFilter", "BatchJobRecord", "BatchRepository"]


@dataclass(frozen=True, slots=True)
class BatchJobRecord:
    id: str
    workspace_id: str
    token_id: str | None
    endpoint: str
    model: str | None
    agent_id: str | None
    metadata: dict[str, str] | None
    input_files: list[str]
    requests_blob: str | None
    status: str
    timeout_hours: int
    created_at: int
    total_requests: int
    started_at: int | None = None
    completed_at: int | None = None
    completed_requests: int = 0
    succeeded_requests: int = 0
    failed_requests: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    output_file: str | None = None
    error_file: str | None = None


@dataclass(frozen=True, slots=True)
class BatchFilter:
    model: str | None = None
    agent_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    created_after: int | None = None
    token_id: str | None = None  # created_by_me
    statuses: tuple[str, ...] = ()
    newest_first: bool = True


_COLUMNS = {f.name: ("metadata_" if f.name == "metadata" else f.name) for f in dataclasses.fields(BatchJobRecord)}


class BatchRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, record: BatchJobRecord) -> None:
        with self._db.session() as s:
            s.add(BatchJobRow(**{_COLUMNS[k]: v for k, v in dataclasses.asdict(record).items()}))

    def get(self, job_id: str, workspace_id: str | None = None) -> BatchJobRecord | None:
        """``workspace_id`` None: any workspace (the job runner's read)."""
        query = select(BatchJobRow).where(BatchJobRow.id == job_id)
        if workspace_id is not None:
            query = query.where(BatchJobRow.workspace_id == workspace_id)
        with self._db.session() as s:
            row = s.scalar(query)
            return _record(row) if row else None

    def list(self, workspace_id: str, flt: BatchFilter, *, offset: int,
             limit: int) -> tuple[list[BatchJobRecord], int]:
        query = select(BatchJobRow).where(BatchJobRow.workspace_id == workspace_id)
        for name, value in (("model", flt.model), ("agent_id", flt.agent_id), ("token_id", flt.token_id)):
            if value is not None:
                query = query.where(getattr(BatchJobRow, name) == value)
        if flt.created_after is not None:
            query = query.where(BatchJobRow.created_at > flt.created_after)
        if flt.statuses:
            query = query.where(BatchJobRow.status.in_(flt.statuses))
        # ids break ties within a second, in the same direction, so the two orders are each other's reverse
        order = ((BatchJobRow.created_at.desc(), BatchJobRow.id.desc()) if flt.newest_first
                 else (BatchJobRow.created_at.asc(), BatchJobRow.id.asc()))
        with self._db.session() as s:
            if flt.metadata:
                rows = s.scalars(query.order_by(*order).execution_options(yield_per=500))
                page, total = matching_page(rows, lambda row: row.metadata_, flt.metadata, offset=offset,
                                            limit=limit, count_all=True)
                return [_record(r) for r in page], total
            total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = list(s.scalars(query.order_by(*order).offset(offset).limit(limit)))
            return [_record(r) for r in rows], total

    def update(self, job_id: str, *, only_if: tuple[str, ...] = (), **values: Any) -> bool:
        """Set fields; with ``only_if``, only while the status is one of those (a compare-and-set)."""
        stmt = update(BatchJobRow).where(BatchJobRow.id == job_id)
        if only_if:
            stmt = stmt.where(BatchJobRow.status.in_(only_if))
        with self._db.session() as s:
            return s.execute(stmt.values(**{_COLUMNS[k]: v for k, v in values.items()})).rowcount > 0

    def status(self, job_id: str) -> str | None:
        with self._db.session() as s:
            return s.scalar(select(BatchJobRow.status).where(BatchJobRow.id == job_id))


def _record(row: BatchJobRow) -> BatchJobRecord:
    return BatchJobRecord(**{name: getattr(row, col) for name, col in _COLUMNS.items()})
