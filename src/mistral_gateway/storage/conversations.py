"""Conversations and their entries. Every API read is filtered by workspace (another workspace's conversation is
simply not found). Entries are numbered by ``seq`` within their conversation; an append names the ``seq`` it
expects to write at, and the unique (conversation, seq) index turns a concurrent append into ``Conflict``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from mistral_gateway.errors import Conflict
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.metadata_filter import matching_page
from mistral_gateway.storage.tables import ConversationEntryRow, ConversationRow

__all__ = ["ConversationRecord", "ConversationRepository", "StoredEntry"]


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    id: str
    workspace_id: str
    agent_id: str | None
    agent_version: int | None
    model: str | None
    config: dict[str, Any]  # instructions, tools, completion_args, guardrails, handoff_execution
    name: str | None
    description: str | None
    metadata: dict[str, Any] | None
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One entry: ``body`` is the entry as the API shows it (its ``id`` and ``type`` included)."""

    body: dict[str, Any]
    created_at: int = 0

    @property
    def id(self) -> str:
        return self.body["id"]

    @property
    def type(self) -> str:
        return self.body["type"]


class ConversationRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, record: ConversationRecord, entries: Sequence[StoredEntry]) -> None:
        """The conversation and its first entries, in one transaction."""
        with self._db.session() as s:
            s.add(_row(record))
            s.flush()  # the parent first: entries reference it
            s.add_all(_entry_rows(record.id, 0, entries))

    def append(self, conversation_id: str, seq: int, entries: Sequence[StoredEntry], updated_at: int) -> None:
        """Entries at ``seq``, ``seq + 1``, ...; ``Conflict`` when another append took those places first (or
        the conversation was deleted meanwhile)."""
        try:
            with self._db.session() as s:
                touched = s.execute(update(ConversationRow).where(ConversationRow.id == conversation_id)
                                    .values(updated_at=updated_at)).rowcount
                if not touched:
                    raise Conflict("the conversation was deleted while this turn ran", code="CONVERSATION_CHANGED")
                s.add_all(_entry_rows(conversation_id, seq, entries))
        except IntegrityError:
            raise Conflict("another request appended to this conversation at the same time; retry",
                           code="CONVERSATION_CHANGED") from None

    def get(self, workspace_id: str, conversation_id: str) -> ConversationRecord | None:
        with self._db.session() as s:
            row = s.scalar(select(ConversationRow).where(ConversationRow.id == conversation_id,
                                                         ConversationRow.workspace_id == workspace_id))
            return _record(row) if row else None

    def list(self, workspace_id: str, *, offset: int, limit: int,
             metadata: dict[str, Any] | None = None) -> list[ConversationRecord]:
        """Newest first. Metadata pairs are matched here (JSON paths differ per database), streamed by 500."""
        query = (select(ConversationRow).where(ConversationRow.workspace_id == workspace_id)
                 .order_by(ConversationRow.created_at.desc(), ConversationRow.id.desc()))
        with self._db.session() as s:
            if not metadata:
                return [_record(r) for r in s.scalars(query.offset(offset).limit(limit))]
            rows = s.scalars(query.execution_options(yield_per=500))
            page, _ = matching_page(rows, lambda row: row.metadata_, metadata, offset=offset, limit=limit)
            return [_record(r) for r in page]

    def entries(self, conversation_id: str) -> list[StoredEntry]:
        """In append order (callers check the workspace with ``get`` first)."""
        with self._db.session() as s:
            rows = s.execute(select(ConversationEntryRow.body, ConversationEntryRow.created_at)
                             .where(ConversationEntryRow.conversation_id == conversation_id)
                             .order_by(ConversationEntryRow.seq))
            return [StoredEntry(body, created) for body, created in rows]

    def entry_count(self, conversation_id: str) -> int:
        with self._db.session() as s:
            return s.scalar(select(func.count()).where(ConversationEntryRow.conversation_id == conversation_id)) or 0

    def delete(self, workspace_id: str, conversation_id: str) -> bool:
        """Entries first: SQLite only cascades with foreign keys switched on, and no dialect is relied upon."""
        with self._db.session() as s:
            owned = s.scalar(select(ConversationRow.id).where(ConversationRow.id == conversation_id,
                                                              ConversationRow.workspace_id == workspace_id))
            if owned is None:
                return False
            s.execute(delete(ConversationEntryRow).where(ConversationEntryRow.conversation_id == conversation_id))
            s.execute(delete(ConversationRow).where(ConversationRow.id == conversation_id))
            return True


_COLUMNS = {"metadata": "metadata_"}


def _row(record: ConversationRecord) -> ConversationRow:
    return ConversationRow(**{_COLUMNS.get(k, k): getattr(record, k) for k in ConversationRecord.__slots__})


def _record(row: ConversationRow) -> ConversationRecord:
    return ConversationRecord(**{k: getattr(row, _COLUMNS.get(k, k)) for k in ConversationRecord.__slots__})


def _entry_rows(conversation_id: str, seq: int, entries: Sequence[StoredEntry]) -> list[ConversationEntryRow]:
    return [ConversationEntryRow(id=e.id, conversation_id=conversation_id, seq=seq + i, type=e.type, body=e.body,
                                 created_at=e.created_at) for i, e in enumerate(entries)]
