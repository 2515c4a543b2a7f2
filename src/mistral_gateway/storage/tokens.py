"""Workspaces and API tokens (hashes only)."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.records import TokenRecord, WorkspaceRecord
from mistral_gateway.storage.tables import ApiToken, Workspace

__all__ = ["TokenRepository"]


class TokenRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def ensure_workspace(self, name: str, now: int) -> WorkspaceRecord:
        with self._db.session() as s:
            row = s.scalar(select(Workspace).where(Workspace.name == name))
            if row is None:
                row = Workspace(id=uuid.uuid4().hex, name=name, created_at=now)
                s.add(row)
            return WorkspaceRecord(id=row.id, name=row.name, created_at=row.created_at)

    def add(
        self,
        *,
        token_id: str,
        name: str,
        workspace: WorkspaceRecord,
        token_hash: str,
        prefix: str,
        scopes: list[str],
        created_at: int,
        expires_at: int | None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        concurrent_requests: int | None = None,
    ) -> TokenRecord:
        with self._db.session() as s:
            s.add(
                ApiToken(
                    id=token_id,
                    name=name,
                    workspace_id=workspace.id,
                    token_hash=token_hash,
                    prefix=prefix,
                    scopes=scopes,
                    created_at=created_at,
                    expires_at=expires_at,
                    requests_per_minute=requests_per_minute,
                    tokens_per_minute=tokens_per_minute,
                    concurrent_requests=concurrent_requests,
                )
            )
        return TokenRecord(token_id, name, workspace.id, workspace.name, token_hash, prefix, tuple(scopes),
                           created_at, expires_at, None, requests_per_minute, tokens_per_minute, concurrent_requests)

    def by_hash(self, token_hash: str) -> TokenRecord | None:
        with self._db.session() as s:
            row = s.execute(
                select(ApiToken, Workspace.name)
                .join(Workspace, Workspace.id == ApiToken.workspace_id)
                .where(ApiToken.token_hash == token_hash)
            ).first()
            return _record(*row) if row else None

    def by_id(self, token_id: str) -> TokenRecord | None:
        with self._db.session() as s:
            row = s.execute(
                select(ApiToken, Workspace.name)
                .join(Workspace, Workspace.id == ApiToken.workspace_id)
                .where(ApiToken.id == token_id)
            ).first()
            return _record(*row) if row else None

    def list(self) -> list[TokenRecord]:
        with self._db.session() as s:
            rows = s.execute(
                select(ApiToken, Workspace.name)
                .join(Workspace, Workspace.id == ApiToken.workspace_id)
                .order_by(ApiToken.created_at, ApiToken.id)
            ).all()
            return [_record(*row) for row in rows]

    def revoke(self, token_id: str, now: int) -> bool:
        with self._db.session() as s:
            row = s.get(ApiToken, token_id)
            if row is None:
                return False
            if row.revoked_at is None:
                row.revoked_at = now
            return True

    def count(self) -> int:
        with self._db.session() as s:
            return len(s.scalars(select(ApiToken.id)).all())


def _record(row: ApiToken, workspace_name: str) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        name=row.name,
        workspace_id=row.workspace_id,
        workspace_name=workspace_name,
        token_hash=row.token_hash,
        prefix=row.prefix,
        scopes=tuple(row.scopes),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        requests_per_minute=row.requests_per_minute,
        tokens_per_minute=row.tokens_per_minute,
        concurrent_requests=row.concurrent_requests,
    )
