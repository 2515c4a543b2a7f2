"""Engine, sessions and migrations. SQLite gets WAL and a busy timeout; any SQLAlchemy URL works."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from mistral_gateway.errors import BadRequest, ServiceUnavailable
from mistral_gateway.storage.permissions import create_private_file, tighten

__all__ = ["RETRY_AFTER", "UNSTORABLE", "Database"]

log = logging.getLogger("mistral_gateway.storage")

RETRY_AFTER = 5.0  # seconds a caller is told to wait when the database cannot be reached

UNSTORABLE = ("the database cannot take a value of this request: text with a NUL character, or a value too long or "
              "too large for its field")


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            _private_sqlite_files(url)
            # Threads share the engine: requests run their queries in a worker thread pool.
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            # As many connections as anyio's worker threads (40), so threads never queue for the pool.
            kwargs.update(pool_size=20, max_overflow=20)
        else:
            kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._probe: Engine | None = None  # readiness probes' engine (``ping``), made on first use

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error. A value the database refuses
        (PostgreSQL: a NUL character in text, a string past its VARCHAR, a number past its column; SQLite stores
        them) came from a request: a 400, not a 500. Its text is not repeated: it holds the statement's values.
        A database that cannot answer is a 503 with ``Retry-After``."""
        try:
            with self._sessions.begin() as session:
                yield session
        except DataError as exc:
            raise BadRequest(UNSTORABLE, code="INVALID_VALUE") from exc
        except (OperationalError, PoolTimeout) as exc:
            # The server down or unreachable, a connection lost, a deadlock, the pool exhausted: a 503 to retry,
            # not a 500. The driver's own first line is logged (never the statement's values).
            reason = str(getattr(exc, "orig", None) or exc).strip().split("\n", 1)[0]
            log.warning("database call failed (%s): %s", type(exc).__name__, reason)
            raise ServiceUnavailable("the database is unavailable; try again shortly", code="DATABASE_UNAVAILABLE",
                                     retry_after=RETRY_AFTER) from exc

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to the newest Alembic revision (idempotent), or up to ``revision`` ("+1": one step)."""
        self._alembic(command.upgrade, revision)

    def downgrade(self, revision: str) -> None:
        """Take the schema down to ``revision`` ("-1": one step, "base": no tables); for tests and operators."""
        self._alembic(command.downgrade, revision)

    def revision(self) -> str | None:
        """The Alembic revision the schema is at (None: not migrated)."""
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def _alembic(self, run: Callable[[Config, str], None], revision: str) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(resources.files("mistral_gateway.storage") / "migrations"))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.engine.begin() as connection:
            cfg.attributes["connection"] = connection
            run(cfg, revision)

    def ping(self, timeout: float) -> None:
        """Readiness: one query on a new connection, not a pooled one (a pooled SQLite connection keeps reading a
        file that has become unreadable; a probe should see what the next connection would). Raises on failure."""
        if self._probe is None:
            from sqlalchemy.pool import NullPool

            connect: dict[str, Any] = ({"timeout": timeout} if self.url.startswith("sqlite")
                                       else {"connect_timeout": max(1, round(timeout))})
            self._probe = create_engine(self.url, poolclass=NullPool, connect_args=connect)
        with self._probe.connect() as connection:
            connection.execute(text("SELECT count(*) FROM alembic_version")).scalar()

    def dispose(self) -> None:
        self.engine.dispose()
        if self._probe is not None:
            self._probe.dispose()


def _private_sqlite_files(url: str) -> None:
    """The database file is created 0600 before SQLite opens it: SQLite would make it 0644, and its -wal and -shm
    files copy the database file's mode."""
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    db = Path(path)
    if not db.parent.is_dir():
        return  # SQLite reports the missing directory itself
    create_private_file(db)
    for suffix in ("-wal", "-shm", "-journal"):  # left by an older version
        tighten(db.with_name(db.name + suffix))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
