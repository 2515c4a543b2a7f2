"""Usage records: queued off the request path, written in batches, listed and aggregated; time arguments."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import func, select

from mistral_gateway.errors import BadRequest
from mistral_gateway.services.usage import UsageLog, parse_time
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.records import UsageRecord, UsageSummary, UsageTuple
from mistral_gateway.storage.tables import UsageRow
from mistral_gateway.storage.usage import UsageRepository

T0 = 1_700_000_000


def record(i: int = 0, **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "created_at": T0 + i, "token_id": "tok_a", "workspace_id": "w1", "workspace": "default",
        "operation": "create_chat_completions", "model": "small", "backend": "local", "dialect": "native",
        "status": 200, "latency_ms": 10.0, "prompt_tokens": 5, "completion_tokens": 7}
    values.update(fields)
    return UsageRecord(**values)


def stored(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(UsageRow)) or 0


def test_records_wait_in_memory_until_flushed(db: Database) -> None:
    log = UsageLog(UsageRepository(db), flush_seconds=3600)
    for i in range(3):
        log.record(record(i))
    assert log.pending() == 3 and stored(db) == 0  # nothing written on the request path
    assert log.flush() == 3
    assert log.pending() == 0 and stored(db) == 3
    assert log.flush() == 0
    log.close()


def test_the_writer_thread_flushes_in_the_background(db: Database) -> None:
    log = UsageLog(UsageRepository(db), flush_seconds=0.05)
    log.record(record())
    assert not any(t.name == "usage-writer" for t in threading.enumerate())  # no lazy thread: start() owns it
    log.start()
    deadline = time.monotonic() + 10
    while stored(db) == 0:
        assert time.monotonic() < deadline, "the writer thread never flushed"
        time.sleep(0.01)
    assert log.pending() == 0
    log.close()
    assert not any(t.name == "usage-writer" and t.is_alive() for t in threading.enumerate())


def test_close_writes_what_is_left(db: Database) -> None:
    log = UsageLog(UsageRepository(db), flush_seconds=3600)
    log.record(record(1))
    log.record(record(2))
    log.close()
    assert stored(db) == 2


class FlakyRepo(UsageRepository):
    def __init__(self, db: Database, failures: int) -> None:
        super().__init__(db)
        self.failures = failures

    def add_rows(self, rows: Sequence[UsageTuple]) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("database unavailable")
        super().add_rows(rows)


def test_a_failed_batch_is_kept_for_the_next_flush(db: Database) -> None:
    log = UsageLog(FlakyRepo(db, failures=1), flush_seconds=3600)
    log.record(record(1))
    log.record(record(2))
    with pytest.raises(OSError):
        log.flush()
    log.record(record(3))
    assert log.pending() == 3
    assert log.flush() == 3
    records, total = log.list()
    assert total == 3 and [r.created_at for r in records] == [T0 + 3, T0 + 2, T0 + 1]  # order kept
    log.close()


def test_the_queue_is_bounded(db: Database) -> None:
    log = UsageLog(FlakyRepo(db, failures=10), flush_seconds=3600, max_pending=5)
    for i in range(8):
        log.record(record(i))
    assert log.pending() == 5 and log.dropped == 3
    log._repo = UsageRepository(db)  # the database is back
    assert [r.created_at for r in log.list()[0]] == [T0 + i for i in range(7, 2, -1)]  # the newest were kept
    log.close()


def test_list_pages_newest_first_and_filters_by_time(db: Database) -> None:
    log = UsageLog(UsageRepository(db), flush_seconds=3600)
    for i in range(5):
        log.record(record(i * 10))
    first, total = log.list(limit=2)
    assert total == 5 and [r.created_at for r in first] == [T0 + 40, T0 + 30]
    assert all(r.id is not None for r in first)
    third, _ = log.list(limit=2, page=2)
    assert [r.created_at for r in third] == [T0]
    window, total = log.list(since=T0 + 10, until=T0 + 30)
    assert total == 2 and [r.created_at for r in window] == [T0 + 20, T0 + 10]
    assert first[0] == record(40, id=first[0].id)  # every field round-trips
    log.close()


def test_summary_aggregates_by_column(db: Database) -> None:
    log = UsageLog(UsageRepository(db), flush_seconds=3600)
    log.record(record(0, model="small", latency_ms=10.0))
    log.record(record(1, model="small", latency_ms=30.0, status=429, prompt_tokens=0, completion_tokens=0))
    log.record(record(2, model="small", latency_ms=20.0, token_id="tok_b"))
    log.record(record(3, model=None, operation="list_models", latency_ms=1.0, prompt_tokens=0, completion_tokens=0))
    assert log.summary("model") == [UsageSummary("small", 3, 1, 10, 14, 20.0), UsageSummary(None, 1, 0, 0, 0, 1.0)]
    by_token = {row.key: row.requests for row in log.summary("token")}
    assert by_token == {"tok_a": 3, "tok_b": 1}
    assert [row.key for row in log.summary("operation", since=T0 + 3)] == ["list_models"]
    assert [(row.key, row.requests) for row in log.summary("backend")] == [("local", 4)]
    with pytest.raises(BadRequest, match="by='colour'"):
        log.summary("colour")
    log.close()


@pytest.mark.parametrize(("text", "expected"), [
    ("1700000000", T0),
    ("1700000000.9", T0),
    ("2023-11-14", 1_699_920_000),
    ("2023-11-14T22:13:20", T0),
    ("2023-11-14T22:13:20Z", T0),
    ("2023-11-15T00:13:20+02:00", T0),
    ("90s", T0 + 1000 - 90),
    ("15m", T0 + 1000 - 900),
    ("24h", T0 + 1000 - 86400),
    ("7d", T0 + 1000 - 7 * 86400),
    ("1w", T0 + 1000 - 7 * 86400),
])
def test_parse_time(text: str, expected: int) -> None:
    assert parse_time(text, now=T0 + 1000) == expected


def test_parse_time_rejects_nonsense() -> None:
    with pytest.raises(BadRequest) as err:
        parse_time("yesterday", now=T0, param="since")
    assert err.value.param == "since" and "yesterday" in err.value.message


def test_large_batches_are_written_whole_and_in_order(db: Database) -> None:
    repo = UsageRepository(db)
    batch = [record(i, status=200 + i % 3, model=None if i % 7 == 0 else f"m{i % 5}") for i in range(1234)]
    repo.add_many(batch)  # more rows than one multi-row INSERT carries
    rows, total = repo.list(limit=2000)
    assert total == 1234
    assert [(r.created_at, r.status, r.model) for r in reversed(rows)] == \
        [(b.created_at, b.status, b.model) for b in batch]


@pytest.mark.parametrize("value", ["99999999999999999999", "99999999999999999999w", "999999999999w", "1e400", "inf",
                                   "nan", "-1", "0001-01-01", "0001-01-01T00:00:00+05:00", "9" * 5000])
def test_parse_time_refuses_what_sqlite_cannot_hold(value: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_time(value, now=T0, param="since")
    assert err.value.param == "since" and len(err.value.message) < 300


def test_list_refuses_pages_past_an_offset_sqlite_holds(db: Database) -> None:
    log = UsageLog(UsageRepository(db))
    for limit, page in [(1000, 2**63 - 1), (0, 0), (1001, 0), (1, -1)]:
        with pytest.raises(BadRequest):
            log.list(limit=limit, page=page)
    assert log.list(limit=1000, page=10**6) == ([], 0)


def test_absurd_counts_from_upstreams_are_clamped_not_retried_forever(db: Database) -> None:
    repo = UsageRepository(db)
    repo.add_many([record(0, prompt_tokens=2**70, completion_tokens=2**63 - 1),
                   record(1, prompt_tokens=2**63 - 1)])
    assert stored(db) == 2
    (row,) = repo.summary("model")
    assert row.requests == 2 and row.prompt_tokens >= 2**63 - 2**12  # summed without SQLite's integer overflow


def test_a_nul_character_in_a_model_name_does_not_wedge_the_queue(db: Database) -> None:
    """PostgreSQL's text holds no NUL character: the batch is written without it, not retried forever (SQLite
    stores it as it is)."""
    repo = UsageRepository(db)
    repo.add_many([record(0, model="ev\x00il"), record(1)])
    rows, total = repo.list()
    assert total == 2 and rows[0].model == "small" and rows[1].model in ("evil", "ev\x00il")


def test_an_overlong_model_name_from_an_upstream_does_not_wedge_the_queue(db: Database) -> None:
    """PostgreSQL refuses a string longer than its VARCHAR (SQLite stores it whole): the batch is cut to the
    columns and written, not retried forever."""
    repo = UsageRepository(db)
    repo.add_many([record(0, model="m" * 300), record(1)])
    rows, total = repo.list()
    assert total == 2 and rows[0].model == "small" and (rows[1].model or "").startswith("m" * 255)
