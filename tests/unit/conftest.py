"""Unit-test helpers: a real migrated database (SQLite and PostgreSQL) and ASGI requests built by hand (the clock and
``database_url`` are in ../conftest)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.types import Message

from db_backends import migrated_database
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.tokens import TokenRepository


@pytest.fixture(autouse=True)
def _no_gateway_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read ``MISTRAL_GATEWAY_*`` from the environment: start every unit test from a clean one."""
    import os

    for key in list(os.environ):
        if key.upper().startswith("MISTRAL_GATEWAY_"):
            monkeypatch.delenv(key)


@pytest.fixture
def db(database_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A real database migrated to the newest schema: SQLite in a temporary directory, then PostgreSQL."""
    with migrated_database(database_backend, request, tmp_path) as database:
        yield database


@pytest.fixture
def ws(db: Database) -> str:
    """A workspace's id in ``db`` (rows of workspace-scoped tables need one)."""
    return TokenRepository(db).ensure_workspace("ws-a", now=1).id


@pytest.fixture
def other_ws(db: Database) -> str:
    return TokenRepository(db).ensure_workspace("ws-b", now=1).id


RequestFactory = Callable[..., Request]


@pytest.fixture
def make_request() -> RequestFactory:
    """Build a Starlette ``Request`` from an ASGI scope and a ``receive`` that yields ``chunks`` in order."""

    def make(
        chunks: Iterable[bytes] = (),
        *,
        headers: dict[str, str] | None = None,
        query: str = "",
        method: str = "POST",
        path: str = "/",
    ) -> Request:
        pending = list(chunks) or [b""]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode("latin-1"),
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()],
            "server": ("testserver", 80),
            "client": ("127.0.0.1", 50000),
        }

        async def receive() -> Message:
            if pending:
                body = pending.pop(0)
                return {"type": "http.request", "body": body, "more_body": bool(pending)}
            return {"type": "http.disconnect"}

        return Request(scope, receive)

    return make
