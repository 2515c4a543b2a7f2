"""File metadata rows, always filtered by workspace (another workspace's file is simply not found)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sqlalchemy import Select, delete, func, or_, select

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.records import FileRecord
from mistral_gateway.storage.tables import FileRow

__all__ = ["FileFilter", "FileRepository"]


@dataclass(frozen=True, slots=True)
class FileFilter:
    sample_types: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    purpose: str | None = None
    mimetypes: tuple[str, ...] = ()
    search: str | None = None


class FileRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, record: FileRecord) -> None:
        with self._db.session() as s:
            s.add(FileRow(**dataclasses.asdict(record)))

    def get(self, workspace_id: str, file_id: str, now: int) -> FileRecord | None:
        with self._db.session() as s:
            row = s.scalar(_live(select(FileRow), now).where(FileRow.workspace_id == workspace_id,
                                                             FileRow.id == file_id))
            return _record(row) if row else None

    def list(self, workspace_id: str, flt: FileFilter, *, offset: int, limit: int, now: int,
             with_total: bool) -> tuple[list[FileRecord], int | None]:
        query = _live(select(FileRow), now).where(FileRow.workspace_id == workspace_id)
        if flt.sample_types:
            query = query.where(FileRow.sample_type.in_(flt.sample_types))
        if flt.sources:
            query = query.where(FileRow.source.in_(flt.sources))
        if flt.purpose:
            query = query.where(FileRow.purpose == flt.purpose)
        if flt.mimetypes:
            query = query.where(FileRow.mimetype.in_(flt.mimetypes))
        if flt.search:
            pattern = "%" + flt.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            query = query.where(or_(FileRow.filename.ilike(pattern, escape="\\"), FileRow.id == flt.search))
        with self._db.session() as s:
            total = None
            if with_total:
                total = s.scalar(select(func.count()).select_from(query.subquery()))
            rows = s.scalars(query.order_by(FileRow.created_at.desc(), FileRow.id).offset(offset).limit(limit))
            return [_record(r) for r in rows], total

    def delete(self, workspace_id: str, file_id: str) -> FileRecord | None:
        with self._db.session() as s:
            row = s.scalar(select(FileRow).where(FileRow.workspace_id == workspace_id, FileRow.id == file_id))
            if row is None:
                return None
            record = _record(row)
            s.execute(delete(FileRow).where(FileRow.id == file_id))
            return record

    def expired(self, now: int, limit: int = 100) -> list[FileRecord]:
        with self._db.session() as s:
            rows = s.scalars(select(FileRow).where(FileRow.expires_at.is_not(None), FileRow.expires_at <= now)
                             .limit(limit))
            return [_record(r) for r in rows]


def _live(query: Select[tuple[FileRow]], now: int) -> Select[tuple[FileRow]]:
    return query.where(or_(FileRow.expires_at.is_(None), FileRow.expires_at > now))


def _record(row: FileRow) -> FileRecord:
    return FileRecord(**{f.name: getattr(row, f.name) for f in dataclasses.fields(FileRecord)})
