"""Libraries and their documents, always filtered by workspace (another workspace's library is simply not found).

A document's chunks and vectors live in the library index (``storage/library_index.py``); its bytes and its
extracted text in the blob store. This repository holds the rows that say where they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.tables import JobRow, LibraryDocumentRow, LibraryRow

__all__ = ["DocumentRecord", "LibraryRecord", "LibraryRepository"]


@dataclass(frozen=True, slots=True)
class LibraryRecord:
    id: str
    workspace_id: str
    name: str
    description: str | None
    chunk_size: int
    owner_id: str | None
    created_at: int  # microseconds
    updated_at: int
    nb_documents: int = 0
    total_size: int = 0


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    id: str
    library_id: str
    workspace_id: str
    name: str
    mime_type: str | None
    extension: str | None
    size: int
    sha256: str
    blob_key: str
    process_status: str
    created_at: int
    text_key: str | None = None
    status_reason: str | None = None
    number_of_pages: int | None = None
    tokens: int = 0
    chunks: int = 0
    uploaded_by_id: str | None = None
    last_processed_at: int | None = None
    attributes: dict[str, Any] | None = None


_LIB_FIELDS = tuple(f.name for f in dataclasses.fields(LibraryRecord) if f.name not in ("nb_documents", "total_size"))
_DOC_FIELDS = tuple(f.name for f in dataclasses.fields(DocumentRecord))
_SORT = {"created_at": LibraryDocumentRow.created_at, "name": LibraryDocumentRow.name, "size": LibraryDocumentRow.size}


class LibraryRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- libraries --------------------------------------------------------------------------------------------
    def add_library(self, record: LibraryRecord) -> None:
        with self._db.session() as s:
            s.add(LibraryRow(**{f: getattr(record, f) for f in _LIB_FIELDS}))

    def count_libraries(self, workspace_id: str) -> int:
        with self._db.session() as s:
            return s.scalar(select(func.count()).select_from(LibraryRow)
                            .where(LibraryRow.workspace_id == workspace_id)) or 0

    def list_libraries(self, workspace_id: str) -> list[LibraryRecord]:
        """Newest first, with their document counts and sizes (one query)."""
        return self._libraries(workspace_id, None)

    def get_library(self, workspace_id: str, library_id: str) -> LibraryRecord | None:
        found = self._libraries(workspace_id, [library_id])
        return found[0] if found else None

    def libraries(self, workspace_id: str, library_ids: Sequence[str]) -> list[LibraryRecord]:
        """Those of ``library_ids`` that exist in the workspace."""
        return self._libraries(workspace_id, list(library_ids)) if library_ids else []

    def _libraries(self, workspace_id: str, ids: list[str] | None) -> list[LibraryRecord]:
        docs = (select(LibraryDocumentRow.library_id, func.count().label("n"),
                       func.coalesce(func.sum(LibraryDocumentRow.size), 0).label("bytes"))
                .group_by(LibraryDocumentRow.library_id).subquery())
        query = (select(LibraryRow, docs.c.n, docs.c.bytes).outerjoin(docs, docs.c.library_id == LibraryRow.id)
                 .where(LibraryRow.workspace_id == workspace_id)
                 .order_by(LibraryRow.created_at.desc(), LibraryRow.id))
        if ids is not None:
            query = query.where(LibraryRow.id.in_(ids))
        with self._db.session() as s:
            return [LibraryRecord(**{f: getattr(row, f) for f in _LIB_FIELDS}, nb_documents=int(n or 0),
                                  total_size=int(size or 0)) for row, n, size in s.execute(query)]

    def update_library(self, workspace_id: str, library_id: str, changes: dict[str, Any], now: int) -> bool:
        with self._db.session() as s:
            result = s.execute(update(LibraryRow).where(LibraryRow.workspace_id == workspace_id,
                                                        LibraryRow.id == library_id)
                               .values(**changes, updated_at=now))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def touch_library(self, library_id: str, now: int) -> None:
        with self._db.session() as s:
            s.execute(update(LibraryRow).where(LibraryRow.id == library_id).values(updated_at=now))

    def delete_library(self, workspace_id: str, library_id: str) -> list[DocumentRecord] | None:
        """Deletes the library and its document rows; returns those documents (their blobs and chunks are the
        caller's to remove), or None if there is no such library."""
        with self._db.session() as s:
            if s.scalar(select(LibraryRow.id).where(LibraryRow.workspace_id == workspace_id,
                                                    LibraryRow.id == library_id)) is None:
                return None
            docs = [_doc(r) for r in s.scalars(select(LibraryDocumentRow)
                                               .where(LibraryDocumentRow.library_id == library_id))]
            s.execute(delete(LibraryDocumentRow).where(LibraryDocumentRow.library_id == library_id))
            s.execute(delete(LibraryRow).where(LibraryRow.id == library_id))
            return docs

    # -- documents --------------------------------------------------------------------------------------------
    def add_document(self, record: DocumentRecord, job: JobRow) -> tuple[DocumentRecord, bool]:
        """``(record, True)``, saved with the job that processes it (one transaction: neither exists without the
        other); or ``(the library's document with the same bytes, False)``: a unique index decides, so two
        identical uploads at once still make one document."""
        try:
            with self._db.session() as s:
                s.add(LibraryDocumentRow(**{f: getattr(record, f) for f in _DOC_FIELDS}))
                s.flush()
                s.add(job)
            return record, True
        except IntegrityError:
            with self._db.session() as s:
                row = s.scalar(select(LibraryDocumentRow).where(LibraryDocumentRow.library_id == record.library_id,
                                                                LibraryDocumentRow.sha256 == record.sha256))
            if row is None:  # the conflict was something else (the library was deleted meanwhile)
                raise
            return _doc(row), False

    def find_by_hash(self, library_id: str, sha256: str) -> DocumentRecord | None:
        with self._db.session() as s:
            row = s.scalar(select(LibraryDocumentRow).where(LibraryDocumentRow.library_id == library_id,
                                                            LibraryDocumentRow.sha256 == sha256))
            return _doc(row) if row else None

    def count_documents(self, library_id: str) -> int:
        with self._db.session() as s:
            return s.scalar(select(func.count()).select_from(LibraryDocumentRow)
                            .where(LibraryDocumentRow.library_id == library_id)) or 0

    def list_documents(self, library_id: str, *, search: str | None, sort_by: str, descending: bool,
                       offset: int, limit: int) -> tuple[list[DocumentRecord], int]:
        """A page of the library's documents and how many match in all."""
        where = [LibraryDocumentRow.library_id == library_id]
        if search:
            pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append(LibraryDocumentRow.name.ilike(pattern, escape="\\"))
        column = _SORT[sort_by]
        order = (column.desc(), LibraryDocumentRow.id.desc()) if descending else (column, LibraryDocumentRow.id)
        with self._db.session() as s:
            total = s.scalar(select(func.count()).select_from(LibraryDocumentRow).where(*where)) or 0
            rows = s.scalars(select(LibraryDocumentRow).where(*where).order_by(*order).offset(offset).limit(limit))
            return [_doc(r) for r in rows], total

    def get_document(self, workspace_id: str, library_id: str, document_id: str) -> DocumentRecord | None:
        with self._db.session() as s:
            row = s.scalar(select(LibraryDocumentRow).where(LibraryDocumentRow.workspace_id == workspace_id,
                                                            LibraryDocumentRow.library_id == library_id,
                                                            LibraryDocumentRow.id == document_id))
            return _doc(row) if row else None

    def document(self, document_id: str) -> DocumentRecord | None:
        """By id alone: the ingestion job's view (its payload came from a checked upload)."""
        with self._db.session() as s:
            row = s.get(LibraryDocumentRow, document_id)
            return _doc(row) if row else None

    def documents(self, document_ids: Sequence[str]) -> dict[str, DocumentRecord]:
        if not document_ids:
            return {}
        with self._db.session() as s:
            rows = s.scalars(select(LibraryDocumentRow).where(LibraryDocumentRow.id.in_(list(document_ids))))
            return {r.id: _doc(r) for r in rows}

    def delete_document(self, workspace_id: str, library_id: str, document_id: str) -> DocumentRecord | None:
        with self._db.session() as s:
            row = s.scalar(select(LibraryDocumentRow).where(LibraryDocumentRow.workspace_id == workspace_id,
                                                            LibraryDocumentRow.library_id == library_id,
                                                            LibraryDocumentRow.id == document_id))
            if row is None:
                return None
            record = _doc(row)
            s.delete(row)
            return record

    def update_document(self, workspace_id: str, library_id: str, document_id: str,
                        changes: dict[str, Any]) -> bool:
        """The user's fields of a document (name, attributes); False if there is no such document."""
        with self._db.session() as s:
            result = s.execute(update(LibraryDocumentRow).where(LibraryDocumentRow.workspace_id == workspace_id,
                                                                LibraryDocumentRow.library_id == library_id,
                                                                LibraryDocumentRow.id == document_id)
                               .values(**changes))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def requeue(self, document_id: str, job: JobRow, status: str) -> bool:
        """The document back to ``status`` with a new job processing it (one transaction); False if it is gone."""
        with self._db.session() as s:
            result = s.execute(update(LibraryDocumentRow).where(LibraryDocumentRow.id == document_id)
                               .values(process_status=status, status_reason=None))
            if not result.rowcount:  # type: ignore[attr-defined]
                return False
            s.add(job)
            return True

    def set_status(self, document_id: str, status: str, **fields: Any) -> bool:
        """The document's processing status (and other columns); False if it was deleted meanwhile."""
        with self._db.session() as s:
            result = s.execute(update(LibraryDocumentRow).where(LibraryDocumentRow.id == document_id)
                               .values(process_status=status, **fields))
            return bool(result.rowcount)  # type: ignore[attr-defined]


def _doc(row: LibraryDocumentRow) -> DocumentRecord:
    return DocumentRecord(**{f: getattr(row, f) for f in _DOC_FIELDS})
