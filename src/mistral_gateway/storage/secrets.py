"""Sealed upstream keys (see ``security.secretbox``); the repository never sees a key in clear."""

from __future__ import annotations

from sqlalchemy import delete, select

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.tables import UpstreamSecretRow

__all__ = ["UpstreamSecretRepository"]


class UpstreamSecretRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def put(self, name: str, sealed: bytes, now: int) -> None:
        with self._db.session() as s:
            row = s.get(UpstreamSecretRow, name)
            if row is None:
                s.add(UpstreamSecretRow(name=name, sealed=sealed, updated_at=now))
            else:
                row.sealed, row.updated_at = sealed, now

    def all(self) -> dict[str, bytes]:
        with self._db.session() as s:
            return {row.name: row.sealed for row in s.scalars(select(UpstreamSecretRow))}

    def updated(self) -> dict[str, int]:
        with self._db.session() as s:
            return {row.name: row.updated_at for row in s.scalars(select(UpstreamSecretRow))}

    def delete(self, name: str) -> bool:
        with self._db.session() as s:
            return bool(s.execute(delete(UpstreamSecretRow).where(UpstreamSecretRow.name == name)).rowcount)
