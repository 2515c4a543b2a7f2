"""storage.files: file metadata rows, always scoped to a workspace, with filters, pagination and expiry."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from sqlalchemy.exc import IntegrityError

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.files import FileFilter, FileRepository
from mistral_gateway.storage.records import FileRecord

NOW = 1_000_000


@pytest.fixture
def repo(db: Database) -> FileRepository:
    return FileRepository(db)


def record(workspace_id: str, filename: str = "data.jsonl", *, created_at: int = NOW - 100, **kw: object) -> FileRecord:
    values: dict[str, object] = dict(
        id=str(uuid.uuid4()), workspace_id=workspace_id, filename=filename, bytes=10, created_at=created_at,
        purpose="fine-tune", sample_type="instruct", source="upload", num_lines=1, mimetype="application/jsonl",
        sha256="0" * 64, blob_key=uuid.uuid4().hex, expires_at=None, visibility="workspace",
    )
    values.update(kw)
    return FileRecord(**values)  # type: ignore[arg-type]


def list_ids(repo: FileRepository, workspace_id: str, flt: FileFilter | None = None, *, offset: int = 0,
             limit: int = 100, now: int = NOW) -> list[str]:
    rows, _ = repo.list(workspace_id, flt or FileFilter(), offset=offset, limit=limit, now=now, with_total=False)
    return [r.id for r in rows]


def test_add_get_roundtrip(repo: FileRepository, ws: str) -> None:
    rec = record(ws, num_lines=None, mimetype=None, expires_at=NOW + 10, visibility="user")
    repo.add(rec)
    assert repo.get(ws, rec.id, NOW) == rec


def test_workspace_isolation(repo: FileRepository, ws: str, other_ws: str) -> None:
    mine = record(ws)
    theirs = record(other_ws)
    repo.add(mine)
    repo.add(theirs)
    assert repo.get(ws, theirs.id, NOW) is None
    assert repo.get(other_ws, mine.id, NOW) is None
    assert list_ids(repo, ws) == [mine.id]
    assert list_ids(repo, other_ws) == [theirs.id]
    assert repo.delete(ws, theirs.id) is None
    assert repo.get(other_ws, theirs.id, NOW) == theirs
    assert repo.delete(other_ws, theirs.id) == theirs
    assert repo.get(other_ws, theirs.id, NOW) is None
    assert repo.get(ws, mine.id, NOW) == mine


def test_unknown_workspace_is_a_foreign_key_error(repo: FileRepository) -> None:
    with pytest.raises(IntegrityError):
        repo.add(record("no-such-workspace"))


def test_filter_sample_type_source_purpose_mimetype(repo: FileRepository, ws: str) -> None:
    a = record(ws, "a.jsonl", sample_type="instruct", source="upload", purpose="fine-tune",
               mimetype="application/jsonl")
    b = record(ws, "b.jsonl", sample_type="pretrain", source="repository", purpose="fine-tune",
               mimetype="application/jsonl")
    c = record(ws, "c.jsonl", sample_type="batch_request", source="upload", purpose="batch",
               mimetype="application/jsonl")
    d = record(ws, "d.pdf", sample_type="instruct", source="mistral", purpose="ocr", mimetype="application/pdf")
    for r in (a, b, c, d):
        repo.add(r)
    ids = lambda **kw: set(list_ids(repo, ws, FileFilter(**kw)))  # noqa: E731
    assert ids() == {a.id, b.id, c.id, d.id}
    assert ids(sample_types=("pretrain",)) == {b.id}
    assert ids(sample_types=("instruct", "batch_request")) == {a.id, c.id, d.id}
    assert ids(sources=("upload",)) == {a.id, c.id}
    assert ids(sources=("repository", "mistral")) == {b.id, d.id}
    assert ids(purpose="batch") == {c.id}
    assert ids(purpose="ocr") == {d.id}
    assert ids(purpose="audio") == set()
    assert ids(mimetypes=("application/pdf",)) == {d.id}
    assert ids(mimetypes=("application/jsonl", "text/plain")) == {a.id, b.id, c.id}
    assert ids(sources=("upload",), purpose="fine-tune") == {a.id}


def test_search_matches_filename_substring_case_insensitively(repo: FileRepository, ws: str) -> None:
    a = record(ws, "Training-Data.jsonl")
    b = record(ws, "eval.jsonl")
    repo.add(a)
    repo.add(b)
    assert set(list_ids(repo, ws, FileFilter(search="data"))) == {a.id}
    assert set(list_ids(repo, ws, FileFilter(search="JSONL"))) == {a.id, b.id}
    assert list_ids(repo, ws, FileFilter(search="nothing")) == []


def test_search_matches_exact_id(repo: FileRepository, ws: str) -> None:
    a = record(ws, "a.jsonl")
    b = record(ws, "b.jsonl")
    repo.add(a)
    repo.add(b)
    assert list_ids(repo, ws, FileFilter(search=b.id)) == [b.id]


def test_search_wildcards_are_literal(repo: FileRepository, ws: str) -> None:
    pct = record(ws, "100%_done.jsonl")
    under = record(ws, "a_b.jsonl")
    plain = record(ws, "axb.jsonl")
    back = record(ws, "back\\slash.jsonl")
    for r in (pct, under, plain, back):
        repo.add(r)
    assert list_ids(repo, ws, FileFilter(search="%")) == [pct.id]
    assert set(list_ids(repo, ws, FileFilter(search="_"))) == {pct.id, under.id}
    assert list_ids(repo, ws, FileFilter(search="a_b")) == [under.id]
    assert list_ids(repo, ws, FileFilter(search="0%_d")) == [pct.id]
    assert list_ids(repo, ws, FileFilter(search="\\")) == [back.id]


def test_pagination_order_and_total(repo: FileRepository, ws: str) -> None:
    records = [record(ws, f"f{i}.jsonl", created_at=NOW - 1000 + i) for i in range(7)]
    for r in records:
        repo.add(r)
    newest_first = [r.id for r in reversed(records)]
    assert list_ids(repo, ws) == newest_first
    assert list_ids(repo, ws, offset=0, limit=3) == newest_first[0:3]
    assert list_ids(repo, ws, offset=3, limit=3) == newest_first[3:6]
    assert list_ids(repo, ws, offset=6, limit=3) == newest_first[6:]
    assert list_ids(repo, ws, offset=9, limit=3) == []
    rows, total = repo.list(ws, FileFilter(), offset=3, limit=2, now=NOW, with_total=True)
    assert total == 7
    assert len(rows) == 2
    _, no_total = repo.list(ws, FileFilter(), offset=0, limit=2, now=NOW, with_total=False)
    assert no_total is None


def test_total_respects_filters(repo: FileRepository, ws: str, other_ws: str) -> None:
    for i in range(3):
        repo.add(record(ws, f"keep{i}.jsonl", purpose="batch"))
    repo.add(record(ws, "other.jsonl"))
    repo.add(record(other_ws, "keep-other.jsonl", purpose="batch"))
    _, total = repo.list(ws, FileFilter(purpose="batch"), offset=0, limit=1, now=NOW, with_total=True)
    assert total == 3


def test_equal_timestamps_order_by_id(repo: FileRepository, ws: str) -> None:
    records = [record(ws, f"same{i}.jsonl", created_at=NOW - 5) for i in range(5)]
    for r in records:
        repo.add(r)
    assert list_ids(repo, ws) == sorted(r.id for r in records)
    page1 = list_ids(repo, ws, offset=0, limit=2)
    page2 = list_ids(repo, ws, offset=2, limit=3)
    assert page1 + page2 == sorted(r.id for r in records)


def test_expiry_hides_rows(repo: FileRepository, ws: str) -> None:
    never = record(ws, "never.jsonl", expires_at=None)
    later = record(ws, "later.jsonl", expires_at=NOW + 1)
    now_ = record(ws, "now.jsonl", expires_at=NOW)
    past = record(ws, "past.jsonl", expires_at=NOW - 1)
    for r in (never, later, now_, past):
        repo.add(r)
    assert set(list_ids(repo, ws)) == {never.id, later.id}
    _, total = repo.list(ws, FileFilter(), offset=0, limit=10, now=NOW, with_total=True)
    assert total == 2
    assert repo.get(ws, later.id, NOW) == later
    assert repo.get(ws, now_.id, NOW) is None
    assert repo.get(ws, past.id, NOW) is None
    assert repo.get(ws, later.id, NOW + 1) is None
    assert {r.id for r in repo.expired(NOW)} == {now_.id, past.id}
    assert {r.id for r in repo.expired(NOW + 1)} == {now_.id, past.id, later.id}
    assert len(repo.expired(NOW, limit=1)) == 1


def test_delete_returns_the_record(repo: FileRepository, ws: str) -> None:
    rec = record(ws)
    repo.add(rec)
    assert repo.delete(ws, rec.id) == rec
    assert repo.delete(ws, rec.id) is None
    assert repo.get(ws, rec.id, NOW) is None


def test_records_are_plain_dataclasses(repo: FileRepository, ws: str) -> None:
    rec = record(ws)
    repo.add(rec)
    got = repo.get(ws, rec.id, NOW)
    assert type(got) is FileRecord
    assert dataclasses.asdict(got) == dataclasses.asdict(rec)  # type: ignore[arg-type]
