"""storage.tokens: workspaces and API token rows (hashes only) in a real SQLite database."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.records import TokenRecord, WorkspaceRecord
from mistral_gateway.storage.tables import ApiToken, Workspace
from mistral_gateway.storage.tokens import TokenRepository


@pytest.fixture
def repo(db: Database) -> TokenRepository:
    return TokenRepository(db)


def add(repo: TokenRepository, ws: WorkspaceRecord, token_id: str, token_hash: str, *, created_at: int = 100,
        expires_at: int | None = None, scopes: list[str] | None = None) -> TokenRecord:
    return repo.add(token_id=token_id, name=f"name-{token_id}", workspace=ws, token_hash=token_hash,
                    prefix="at_abcdefg", scopes=scopes or ["*"], created_at=created_at, expires_at=expires_at)


def test_ensure_workspace_is_idempotent(repo: TokenRepository, db: Database) -> None:
    first = repo.ensure_workspace("team-a", now=10)
    again = repo.ensure_workspace("team-a", now=99)
    assert first == again
    assert first.name == "team-a"
    assert first.created_at == 10
    other = repo.ensure_workspace("team-b", now=11)
    assert other.id != first.id
    with db.session() as s:
        assert sorted(s.scalars(select(Workspace.name))) == ["team-a", "team-b"]


def test_add_and_by_hash(repo: TokenRepository) -> None:
    ws = repo.ensure_workspace("default", now=1)
    created = add(repo, ws, "tok_1", "a" * 64, created_at=5, expires_at=500, scopes=["files", "models"])
    assert created.workspace_id == ws.id
    assert created.workspace_name == "default"
    assert created.revoked_at is None
    found = repo.by_hash("a" * 64)
    assert found == created
    assert found is not None
    assert found.scopes == ("files", "models")
    assert found.expires_at == 500
    assert repo.by_hash("b" * 64) is None


def test_by_hash_reports_workspace_name(repo: TokenRepository) -> None:
    ws_a = repo.ensure_workspace("alpha", now=1)
    ws_b = repo.ensure_workspace("beta", now=1)
    add(repo, ws_a, "tok_a", "1" * 64)
    add(repo, ws_b, "tok_b", "2" * 64)
    a, b = repo.by_hash("1" * 64), repo.by_hash("2" * 64)
    assert a is not None
    assert b is not None
    assert (a.workspace_name, a.workspace_id) == ("alpha", ws_a.id)
    assert (b.workspace_name, b.workspace_id) == ("beta", ws_b.id)


def test_token_hash_is_unique(repo: TokenRepository) -> None:
    ws = repo.ensure_workspace("default", now=1)
    add(repo, ws, "tok_1", "c" * 64)
    with pytest.raises(IntegrityError):
        add(repo, ws, "tok_2", "c" * 64)
    assert repo.count() == 1


def test_list_is_ordered_by_creation(repo: TokenRepository) -> None:
    ws = repo.ensure_workspace("default", now=1)
    add(repo, ws, "tok_late", "1" * 64, created_at=300)
    add(repo, ws, "tok_early", "2" * 64, created_at=100)
    add(repo, ws, "tok_mid", "3" * 64, created_at=200)
    assert [t.id for t in repo.list()] == ["tok_early", "tok_mid", "tok_late"]
    assert repo.count() == 3


def test_revoke(repo: TokenRepository, db: Database) -> None:
    ws = repo.ensure_workspace("default", now=1)
    add(repo, ws, "tok_1", "d" * 64)
    add(repo, ws, "tok_2", "e" * 64)
    assert repo.revoke("tok_1", now=1000) is True
    revoked = repo.by_hash("d" * 64)
    assert revoked is not None
    assert revoked.revoked_at == 1000
    # revoking again keeps the first revocation time
    assert repo.revoke("tok_1", now=2000) is True
    again = repo.by_hash("d" * 64)
    assert again is not None
    assert again.revoked_at == 1000
    # the other token is untouched
    other = repo.by_hash("e" * 64)
    assert other is not None
    assert other.revoked_at is None
    assert repo.revoke("tok_missing", now=3000) is False
    with db.session() as s:
        assert s.get(ApiToken, "tok_missing") is None


def test_empty_repository(repo: TokenRepository) -> None:
    assert repo.list() == []
    assert repo.count() == 0
