"""The Alembic migrations and the ORM tables must describe the same schema, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.tables import Base

VERSIONS = Path(__file__).resolve().parents[2] / "src" / "mistral_gateway" / "storage" / "migrations" / "versions"


def schema_diff(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


def test_migrations_match_tables(database_url: str) -> None:
    db = Database(database_url)
    db.migrate()
    diff = schema_diff(db)
    db.dispose()
    assert diff == []


def test_every_migration_goes_down_and_up_one_step_at_a_time(database_url: str) -> None:
    db = Database(database_url)
    db.migrate()
    walked: list[str] = []
    while (revision := db.revision()) is not None:
        walked.append(revision)
        db.downgrade("-1")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}  # base: none of ours left
    for revision in reversed(walked):
        db.migrate("+1")
        assert db.revision() == revision
    diff = schema_diff(db)
    db.dispose()
    assert len(walked) == len(list(VERSIONS.glob("0*.py")))  # the walk went through every revision
    assert diff == []


def test_migrate_is_idempotent(database_url: str) -> None:
    db = Database(database_url)
    db.migrate()
    db.migrate()
    tables = set(inspect(db.engine).get_table_names())
    db.dispose()
    assert {"workspaces", "api_tokens", "files", "fine_tuned_models", "alembic_version"} <= tables


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    with db.engine.connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    db.dispose()
    assert mode == "wal"
