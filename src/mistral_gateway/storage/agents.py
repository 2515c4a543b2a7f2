"""Agents and their versions, always filtered by workspace (another workspace's agent is simply not found).

A delete only marks ``deleted_at``: the versions stay, so conversations that ran the agent can still be read and
continued (``include_deleted``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select, update

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.metadata_filter import matching_page
from mistral_gateway.storage.tables import AgentRow, AgentVersionRow

__all__ = ["AgentFilter", "AgentRecord", "AgentRepository"]


@dataclass(frozen=True, slots=True)
class AgentRecord:
    id: str
    workspace_id: str
    name: str
    source: str
    deployment_chat: bool
    metadata: dict[str, Any] | None
    version: int  # the active version
    latest_version: int
    created_at: int  # microseconds
    updated_at: int
    deleted_at: int | None = None


@dataclass(frozen=True, slots=True)
class AgentFilter:
    deployment_chat: bool | None = None
    sources: tuple[str, ...] = ()
    name: str | None = None
    search: str | None = None  # a substring of the name or the id
    id: str | None = None
    metadata: Mapping[str, Any] | None = None  # every pair must be in the agent's metadata


class AgentRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, record: AgentRecord, body: dict[str, Any]) -> None:
        """The agent with its first version (``record.version``)."""
        with self._db.session() as s:
            s.add(AgentRow(id=record.id, workspace_id=record.workspace_id, name=record.name, source=record.source,
                           deployment_chat=record.deployment_chat, metadata_=record.metadata,
                           version=record.version, latest_version=record.latest_version,
                           created_at=record.created_at, updated_at=record.updated_at, deleted_at=record.deleted_at))
            s.flush()  # the version row's foreign key needs the agent first (PostgreSQL checks at once)
            s.add(AgentVersionRow(agent_id=record.id, version=record.version, body=body, created_at=record.created_at))

    def get(self, workspace_id: str, agent_id: str, *, include_deleted: bool = False) -> AgentRecord | None:
        query = select(AgentRow).where(AgentRow.workspace_id == workspace_id, AgentRow.id == agent_id)
        if not include_deleted:
            query = query.where(AgentRow.deleted_at.is_(None))
        with self._db.session() as s:
            row = s.scalar(query)
            return _record(row) if row else None

    def body(self, agent_id: str, version: int) -> dict[str, Any] | None:
        """A version's stored fields (the caller found the agent in its workspace first)."""
        with self._db.session() as s:
            return s.scalar(select(AgentVersionRow.body).where(AgentVersionRow.agent_id == agent_id,
                                                               AgentVersionRow.version == version))

    def versions(self, agent_id: str) -> list[int]:
        return self.versions_of([agent_id]).get(agent_id, [])

    def versions_of(self, agent_ids: list[str]) -> dict[str, list[int]]:
        """Each agent's version numbers, ascending (one query for a list page)."""
        found: dict[str, list[int]] = {}
        with self._db.session() as s:
            for agent_id, version in s.execute(
                    select(AgentVersionRow.agent_id, AgentVersionRow.version)
                    .where(AgentVersionRow.agent_id.in_(agent_ids))
                    .order_by(AgentVersionRow.agent_id, AgentVersionRow.version)):
                found.setdefault(agent_id, []).append(version)
        return found

    def active_bodies(self, records: list[AgentRecord]) -> dict[str, dict[str, Any]]:
        """Each record's active version's fields, by agent id (one query for a list page)."""
        if not records:
            return {}
        wanted = {r.id: r.version for r in records}
        with self._db.session() as s:
            rows = s.execute(select(AgentVersionRow.agent_id, AgentVersionRow.version, AgentVersionRow.body)
                             .where(AgentVersionRow.agent_id.in_(list(wanted))))
            return {agent_id: body for agent_id, version, body in rows if wanted[agent_id] == version}

    def count(self, workspace_id: str) -> int:
        """Agents not deleted."""
        with self._db.session() as s:
            return s.scalar(select(func.count()).select_from(AgentRow).where(
                AgentRow.workspace_id == workspace_id, AgentRow.deleted_at.is_(None))) or 0

    def list(self, workspace_id: str, flt: AgentFilter, *, offset: int, limit: int) -> list[AgentRecord]:
        """In creation order (ids break ties)."""
        query = select(AgentRow).where(AgentRow.workspace_id == workspace_id, AgentRow.deleted_at.is_(None))
        if flt.deployment_chat is not None:
            query = query.where(AgentRow.deployment_chat == flt.deployment_chat)
        if flt.sources:
            query = query.where(AgentRow.source.in_(flt.sources))
        if flt.name is not None:
            query = query.where(AgentRow.name == flt.name)
        if flt.id is not None:
            query = query.where(AgentRow.id == flt.id)
        if flt.search:
            pattern = "%" + flt.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            query = query.where(or_(AgentRow.name.ilike(pattern, escape="\\"), AgentRow.id.ilike(pattern, escape="\\")))
        query = query.order_by(AgentRow.created_at, AgentRow.id)
        with self._db.session() as s:
            if flt.metadata:
                rows = s.scalars(query.execution_options(yield_per=500))
                page, _ = matching_page(rows, _metadata, flt.metadata, offset=offset, limit=limit)
                return [_record(r) for r in page]
            return [_record(r) for r in s.scalars(query.offset(offset).limit(limit))]

    def add_version(self, workspace_id: str, agent_id: str, body: dict[str, Any], *, name: str,
                    metadata: dict[str, Any] | None, deployment_chat: bool, now: int) -> AgentRecord | None:
        """A new version (latest + 1) that becomes the active one; None if the agent is not there (or deleted).
        The increment is one UPDATE, so concurrent updates get distinct numbers on either database."""
        with self._db.session() as s:
            version = s.scalar(
                update(AgentRow).where(AgentRow.workspace_id == workspace_id, AgentRow.id == agent_id,
                                       AgentRow.deleted_at.is_(None))
                .values(latest_version=AgentRow.latest_version + 1, version=AgentRow.latest_version + 1, name=name,
                        metadata_=metadata, deployment_chat=deployment_chat, updated_at=now)
                .returning(AgentRow.latest_version))
            if version is None:
                return None
            s.add(AgentVersionRow(agent_id=agent_id, version=version, body=body, created_at=now))
            s.flush()
            row = s.get(AgentRow, agent_id, populate_existing=True)
            assert row is not None
            return _record(row)

    def set_version(self, workspace_id: str, agent_id: str, version: int, *, name: str,
                    metadata: dict[str, Any] | None, now: int) -> AgentRecord | None:
        """Make an existing version the active one (the caller checked it exists); None if the agent is gone."""
        with self._db.session() as s:
            done = s.execute(update(AgentRow).where(AgentRow.workspace_id == workspace_id, AgentRow.id == agent_id,
                                                    AgentRow.deleted_at.is_(None))
                             .values(version=version, name=name, metadata_=metadata, updated_at=now)).rowcount
            if not done:
                return None
            row = s.get(AgentRow, agent_id, populate_existing=True)
            assert row is not None
            return _record(row)

    def delete(self, workspace_id: str, agent_id: str, now: int) -> bool:
        with self._db.session() as s:
            return s.execute(update(AgentRow).where(AgentRow.workspace_id == workspace_id, AgentRow.id == agent_id,
                                                    AgentRow.deleted_at.is_(None))
                             .values(deleted_at=now)).rowcount > 0


def _metadata(row: AgentRow) -> dict[str, Any] | None:
    return row.metadata_


def _record(row: AgentRow) -> AgentRecord:
    return AgentRecord(id=row.id, workspace_id=row.workspace_id, name=row.name, source=row.source,
                       deployment_chat=row.deployment_chat, metadata=row.metadata_, version=row.version,
                       latest_version=row.latest_version, created_at=row.created_at, updated_at=row.updated_at,
                       deleted_at=row.deleted_at)
