"""Rows survive a downgrade and upgrade of the migrations that came after their tables, on SQLite (where batch
ALTERs rebuild whole tables) and on PostgreSQL (where 0005 narrows and widens columns in place)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.epoch import FileEpoch
from mistral_gateway.storage.files import FileRepository
from mistral_gateway.storage.jobs import JobRepository
from mistral_gateway.storage.limits import Bucket, DatabaseLimiter
from mistral_gateway.storage.models import FineTunedModelRepository
from mistral_gateway.storage.records import FileRecord, FineTunedModelRecord, UsageRecord
from mistral_gateway.storage.secrets import UpstreamSecretRepository
from mistral_gateway.storage.tables import Base
from mistral_gateway.storage.tokens import TokenRepository
from mistral_gateway.storage.usage import UsageRepository

NOW = 1_700_000_000
# the tables each revision had: what a round trip through it must leave as it was
TABLES = {
    "0001": ("workspaces", "api_tokens", "files", "fine_tuned_models"),
    "0004": ("workspaces", "api_tokens", "files", "fine_tuned_models", "rate_windows", "rate_leases",
             "usage_records", "upstream_secrets", "jobs"),
}


def fill(db: Database, tmp_path: Path, *, token_limits: bool) -> None:
    """One row or more in each table the oldest revisions had, through the repositories."""
    tokens = TokenRepository(db)
    ws = tokens.ensure_workspace("ws-a", now=NOW)
    limits = {"requests_per_minute": 2**31 - 1, "tokens_per_minute": 10**12, "concurrent_requests": 4}
    tokens.add(token_id="tok-1", name="one", workspace=ws, token_hash="a" * 64, prefix="mg-aaaa", scopes=["*"],
               created_at=NOW, expires_at=NOW + 60, **(limits if token_limits else {}))
    FileRepository(db).add(FileRecord("f-1", ws.id, "train.jsonl", 3 * 2**31, NOW, "fine-tune", "instruct", "upload",
                                      12, "application/jsonl", "b" * 64, "blob-1", None, "workspace"))
    FineTunedModelRepository(db, FileEpoch(tmp_path / "models.epoch")).add(FineTunedModelRecord(
        "ft:small:x", ws.id, "mistral-small-latest", "job-1", "mine", "tuned", False, ("completion_chat",), 32768,
        NOW))
    UsageRepository(db).add_many([UsageRecord(NOW, "tok-1", ws.id, "ws-a", "chat", "small", "fake", "native", 200,
                                              12.5, 2**31 - 1, 7)])
    UpstreamSecretRepository(db).put("peer", b"\x00sealed\xff", NOW)
    JobRepository(db).enqueue(ws.id, "noop", {"n": 1, "text": "é"}, now=NOW)
    DatabaseLimiter(db).admit([Bucket("token", "tok-1", requests_per_minute=5, concurrent_requests=2)], "lease-1",
                              now=NOW)


def snapshot(db: Database, tables: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """Every row of ``tables`` in primary-key order, as plain dicts of the columns the newest schema has."""
    out: dict[str, list[dict[str, Any]]] = {}
    with db.engine.connect() as conn:
        for name in tables:
            table = Base.metadata.tables[name]
            rows = conn.execute(select(table).order_by(*table.primary_key.columns)).mappings()
            out[name] = [dict(row) for row in rows]
    return out


@pytest.mark.parametrize("target", sorted(TABLES))
def test_rows_survive_a_round_trip_through_an_older_revision(db: Database, tmp_path: Path, target: str) -> None:
    # the token limits came in 0002: below it a round trip forgets them, as a downgrade must
    fill(db, tmp_path, token_limits=target >= "0002")
    before = snapshot(db, TABLES[target])
    assert all(before.values())  # each table has rows to lose
    db.downgrade(target)
    assert db.revision() == target
    db.migrate()
    after = snapshot(db, TABLES[target])
    newer = set(Base.metadata.tables) - set(TABLES[target])
    empty = {name: snapshot(db, (name,))[name] for name in newer}
    tables = set(inspect(db.engine).get_table_names())
    assert after == before
    assert empty == {name: [] for name in newer}  # the tables the downgrade dropped came back, empty
    assert tables >= set(Base.metadata.tables)
