"""The databases tests run against: SQLite files, and the PostgreSQL server in ``MISTRAL_GATEWAY_TEST_POSTGRES_URL``
(``scripts/pg_test_cluster.sh`` starts a throwaway one) where each test gets a database of its own, dropped after."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from mistral_gateway.storage.db import Database

__all__ = ["BACKENDS", "POSTGRES_ENV", "POSTGRES_SKIPPED", "PostgresServer", "app_database_url",
           "migrated_database", "migrated_sqlite_file"]

POSTGRES_ENV = "MISTRAL_GATEWAY_TEST_POSTGRES_URL"
POSTGRES_SKIPPED = (f"PostgreSQL runs skipped: set {POSTGRES_ENV} (.ci/run does; "
                    "scripts/pg_test_cluster.sh run make test)")
# parameters of the fixtures that run a test once per backend (tests/conftest.py skips the marked ones without a URL)
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]


class PostgresServer:
    def __init__(self, url: str) -> None:
        self._url = make_url(url)
        # one connection kept for the session; CREATE/DROP DATABASE cannot run in a transaction
        self._admin = create_engine(self._url, isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=0)
        self._template: str | None = None

    @staticmethod
    def describe(url: str) -> str:
        return make_url(url).render_as_string(hide_password=True)

    @contextmanager
    def database(self, template: str | None = None) -> Iterator[str]:
        """A fresh database, empty or a copy of ``template``; dropped on exit even if the test left connections
        open (WITH (FORCE))."""
        name = self._create(template)
        try:
            yield self._url_of(name)
        finally:
            self._drop(name)

    def migrated_template(self) -> str:
        """A database migrated to the newest schema once per session, for tests that start from a migrated one."""
        if self._template is None:
            name = self._create(None)
            database = Database(self._url_of(name))
            database.migrate()
            database.dispose()  # CREATE DATABASE ... TEMPLATE refuses a template with open connections
            self._template = name
        return self._template

    def allow_connections(self, name: str, allow: bool) -> None:
        """Let clients connect to database ``name`` again, or refuse them and end its open sessions: an outage of
        that database, for tests of what the gateway answers meanwhile."""
        with self._admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}'))
            if not allow:
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                             {"name": name})

    def close(self) -> None:
        if self._template is not None:
            self._drop(self._template)
        self._admin.dispose()

    def _create(self, template: str | None) -> str:
        name = f"test_{uuid.uuid4().hex[:16]}"
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
        return name

    def _drop(self, name: str) -> None:
        with self._admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def _url_of(self, name: str) -> str:
        return self._url.set(database=name).render_as_string(hide_password=False)


@contextmanager
def migrated_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database at the newest schema, copied from one migrated once per session: a SQLite file in ``tmp_path``, or
    a database on the PostgreSQL server (Alembic per test would add 0.1-0.4 s each; test_migrations runs it)."""
    with ExitStack() as stack:
        if backend == "sqlite":
            path = tmp_path / "unit.db"
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
            url = f"sqlite:///{path}"
        else:
            server: PostgresServer = request.getfixturevalue("postgres_server")
            url = stack.enter_context(server.database(template=server.migrated_template()))
        database = Database(url)
        stack.callback(database.dispose)  # before the database is dropped
        yield database


@contextmanager
def app_database_url(backend: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The ``database_url`` setting of an app built on ``backend``: None (the default, a SQLite file in its data dir)
    or a database of its own on the PostgreSQL server, copied from the migrated template so the app's own migrate
    at start finds nothing to do (dropped on exit: close the app's services first)."""
    if backend == "sqlite":
        yield None
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with server.database(template=server.migrated_template()) as url:
        yield url


def migrated_sqlite_file(path: Path) -> Path:
    database = Database(f"sqlite:///{path}")
    database.migrate()
    database.dispose()  # the last connection checkpoints the WAL into the file and removes it
    return path
