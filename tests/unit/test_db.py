"""storage.db: sessions commit on success and roll back on error (SQLite and PostgreSQL); SQLite pragmas are
applied."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.tables import ApiToken, Workspace


def test_session_commits(db: Database) -> None:
    with db.session() as s:
        s.add(Workspace(id="w1", name="one", created_at=1))
    with db.session() as s:
        assert s.scalar(select(Workspace.name).where(Workspace.id == "w1")) == "one"


def test_session_rolls_back_on_error(db: Database) -> None:
    with pytest.raises(RuntimeError), db.session() as s:
        s.add(Workspace(id="w2", name="two", created_at=1))
        s.flush()
        raise RuntimeError("abort")
    with db.session() as s:
        assert s.get(Workspace, "w2") is None


def test_foreign_keys_are_enforced(db: Database) -> None:
    """SQLite needs ``PRAGMA foreign_keys``; PostgreSQL always enforces them: the same on both."""
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(ApiToken(id="t1", name="n", workspace_id="no-such-workspace", token_hash="h", prefix="p", scopes=[],
                       created_at=1))


def test_sqlite_pragmas(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'pragmas.db'}")
    try:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        db.dispose()


def test_migrate_url_with_percent(tmp_path: Path) -> None:
    d = tmp_path / "100%"
    d.mkdir()
    database = Database(f"sqlite:///{d / 'x.db'}")
    try:
        database.migrate()
        with database.session() as s:
            assert s.scalars(select(Workspace)).all() == []
    finally:
        database.dispose()
