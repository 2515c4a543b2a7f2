"""storage.batch: batch job rows per workspace, with filters, both orders, metadata and compare-and-set updates."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest

from mistral_gateway.storage.batch import BatchFilter, BatchJobRecord, BatchRepository
from mistral_gateway.storage.db import Database

NOW = 1_700_000_000


@pytest.fixture
def repo(db: Database) -> BatchRepository:
    return BatchRepository(db)


QUEUED = BatchJobRecord(id="", workspace_id="", token_id="tok_a", endpoint="/v1/chat/completions",
                        model="mistral-small-latest", agent_id=None, metadata=None, input_files=[], requests_blob=None,
                        status="QUEUED", timeout_hours=24, created_at=NOW, total_requests=2)


def job(workspace_id: str, **kw: Any) -> BatchJobRecord:
    return dataclasses.replace(QUEUED, **{"id": str(uuid.uuid4()), "workspace_id": workspace_id, **kw})


def ids(repo: BatchRepository, ws: str, flt: BatchFilter | None = None, **page: int) -> tuple[list[str], int]:
    rows, total = repo.list(ws, flt or BatchFilter(), offset=page.get("offset", 0), limit=page.get("limit", 100))
    return [r.id for r in rows], total


def test_add_get_roundtrip_with_json_columns(repo: BatchRepository, ws: str, other_ws: str) -> None:
    rec = job(ws, metadata={"clé": "välue", "n": "1"}, input_files=[str(uuid.uuid4())], agent_id="ag_1",
              errors=[{"message": "line 3: bad json ✗", "count": 1}], started_at=NOW + 1, completed_requests=1,
              succeeded_requests=1, output_file=str(uuid.uuid4()), token_id=None)
    repo.add(rec)
    assert repo.get(rec.id, ws) == rec
    assert repo.get(rec.id) == rec  # the runner's read, any workspace
    assert repo.get(rec.id, other_ws) is None
    assert repo.status(rec.id) == "QUEUED" and repo.status("nope") is None


def test_both_orders_break_ties_by_id_and_are_each_others_reverse(repo: BatchRepository, ws: str) -> None:
    same_second = [job(ws, id=f"00000000-0000-4000-8000-00000000000{i}") for i in range(4)]
    for rec in reversed(same_second):  # inserted out of order: the order comes from ORDER BY, not insertion
        repo.add(rec)
    older = job(ws, created_at=NOW - 1)
    repo.add(older)
    newest, total = ids(repo, ws)
    oldest, _ = ids(repo, ws, BatchFilter(newest_first=False))
    assert total == 5 and newest == [r.id for r in reversed(same_second)] + [older.id]
    assert oldest == list(reversed(newest))
    assert ids(repo, ws, offset=1, limit=2) == (newest[1:3], 5)


def test_filters(repo: BatchRepository, ws: str, other_ws: str) -> None:
    a = job(ws, model="m-a", status="RUNNING", created_at=NOW - 10)
    b = job(ws, model=None, agent_id="ag_b", token_id="tok_b", status="SUCCESS")
    c = job(ws, model="M-A", status="QUEUED")  # model names compare exactly (case too) on both databases
    for rec in (a, b, c, job(other_ws, model="m-a")):
        repo.add(rec)
    assert ids(repo, ws, BatchFilter(model="m-a")) == ([a.id], 1)
    assert ids(repo, ws, BatchFilter(agent_id="ag_b")) == ([b.id], 1)
    assert ids(repo, ws, BatchFilter(token_id="tok_b")) == ([b.id], 1)
    assert set(ids(repo, ws, BatchFilter(statuses=("RUNNING", "QUEUED")))[0]) == {a.id, c.id}
    assert set(ids(repo, ws, BatchFilter(created_after=NOW - 10))[0]) == {b.id, c.id}  # strictly after


def test_metadata_filter_pages_and_counts(repo: BatchRepository, ws: str) -> None:
    tagged = [job(ws, created_at=NOW + i, metadata={"team": "ml", "i": str(i)}) for i in range(5)]
    for rec in tagged:
        repo.add(rec)
    repo.add(job(ws, metadata={"team": "ML"}))
    repo.add(job(ws, metadata=None))
    page, total = ids(repo, ws, BatchFilter(metadata={"team": "ml"}), offset=1, limit=2)
    assert total == 5 and page == [tagged[3].id, tagged[2].id]
    assert ids(repo, ws, BatchFilter(metadata={"team": "ml", "i": "0"})) == ([tagged[0].id], 1)


def test_update_is_a_compare_and_set_on_the_status(repo: BatchRepository, ws: str) -> None:
    rec = job(ws)
    repo.add(rec)
    assert repo.update(rec.id, only_if=("QUEUED",), status="RUNNING", started_at=NOW + 5)
    assert not repo.update(rec.id, only_if=("QUEUED",), status="CANCELLED")  # lost the race: nothing changed
    errors = [{"message": "boom", "count": 2}]
    assert repo.update(rec.id, status="SUCCESS", completed_requests=2, failed_requests=2, errors=errors,
                       metadata={"k": "v"})
    assert repo.get(rec.id, ws) == dataclasses.replace(
        rec, status="SUCCESS", started_at=NOW + 5, completed_requests=2, failed_requests=2, errors=errors,
        metadata={"k": "v"})
    assert not repo.update("no-such-job", status="RUNNING")
