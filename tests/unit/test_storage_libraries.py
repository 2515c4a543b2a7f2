"""storage.libraries: libraries with their document counts, documents saved with their job, deduplicated by hash,
searched (case-insensitive, wildcards literal) and sorted the same way on both databases."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.jobs import JobRepository
from mistral_gateway.storage.libraries import DocumentRecord, LibraryRecord, LibraryRepository

NOW = 1_700_000_000_000_000  # microseconds


@pytest.fixture
def repo(db: Database) -> LibraryRepository:
    return LibraryRepository(db)


@pytest.fixture
def jobs(db: Database) -> JobRepository:
    return JobRepository(db)


def library(ws: str, name: str = "docs", *, created_at: int = NOW) -> LibraryRecord:
    return LibraryRecord(str(uuid.uuid4()), ws, name, "about ✓", 512, "tok_a", created_at, created_at)


def document(lib: LibraryRecord, name: str = "a.md", *, size: int = 10, created_at: int = NOW,
             **kw: Any) -> DocumentRecord:
    values: dict[str, Any] = dict(
        id=str(uuid.uuid4()), library_id=lib.id, workspace_id=lib.workspace_id, name=name, mime_type="text/markdown",
        extension="md", size=size, sha256=uuid.uuid4().hex * 2, blob_key=uuid.uuid4().hex, process_status="Queued",
        created_at=created_at)
    values.update(kw)
    return DocumentRecord(**values)


def add(repo: LibraryRepository, jobs: JobRepository, doc: DocumentRecord) -> tuple[DocumentRecord, bool]:
    return repo.add_document(doc, jobs.new_row(doc.workspace_id, "library.ingest", {"document_id": doc.id}, now=1))


def test_libraries_with_their_counts_newest_first(repo: LibraryRepository, jobs: JobRepository, ws: str,
                                                  other_ws: str) -> None:
    old, new, empty = library(ws, "old", created_at=NOW - 1), library(ws, "new"), library(ws, "empty")
    for lib in (old, new, empty, library(other_ws)):
        repo.add_library(lib)
    add(repo, jobs, document(old, size=3 * 2**31))  # a sum past 32 bits
    add(repo, jobs, document(old, size=5))
    listed = repo.list_libraries(ws)
    assert [lib.id for lib in listed] == [*sorted([new.id, empty.id]), old.id]  # a tie goes by id
    assert repo.get_library(ws, old.id) == dataclasses.replace(old, nb_documents=2, total_size=3 * 2**31 + 5)
    assert repo.get_library(ws, empty.id) == empty and repo.count_libraries(ws) == 3
    assert {lib.id for lib in repo.libraries(ws, [old.id, new.id, str(uuid.uuid4())])} == {old.id, new.id}
    assert repo.libraries(ws, []) == [] and repo.get_library(other_ws, old.id) is None
    assert repo.update_library(ws, new.id, {"name": "renamed", "description": None}, NOW + 5)
    assert not repo.update_library(other_ws, new.id, {"name": "x"}, NOW + 5)
    assert repo.get_library(ws, new.id) == dataclasses.replace(new, name="renamed", description=None,
                                                               updated_at=NOW + 5)


def test_the_same_bytes_make_one_document_and_one_job(repo: LibraryRepository, jobs: JobRepository,
                                                      ws: str) -> None:
    lib = library(ws)
    repo.add_library(lib)
    first = document(lib, attributes={"lang": "fr", "n": [1, 2]})
    assert add(repo, jobs, first) == (first, True)
    again = document(lib, "copy.md", sha256=first.sha256)
    assert add(repo, jobs, again) == (first, False)  # the unique index decided; the transaction was rolled back
    assert repo.find_by_hash(lib.id, first.sha256) == first and repo.count_documents(lib.id) == 1
    assert jobs.queued_by_kind() == {"library.ingest": 1}
    other = library(ws, "other")
    repo.add_library(other)
    assert add(repo, jobs, dataclasses.replace(again, library_id=other.id))[1]  # another library: its own


def test_search_is_case_insensitive_and_takes_wildcards_literally(repo: LibraryRepository, jobs: JobRepository,
                                                                   ws: str) -> None:
    lib = library(ws)
    repo.add_library(lib)
    names = ["Report_2024.PDF", "report-2024.pdf", "100%.md", "notes.md", "back\\slash.txt"]
    docs = {name: document(lib, name) for name in names}
    for doc in docs.values():
        add(repo, jobs, doc)

    def found(search: str) -> set[str]:
        rows, total = repo.list_documents(lib.id, search=search, sort_by="name", descending=False, offset=0,
                                          limit=100)
        assert total == len(rows)
        return {r.name for r in rows}

    assert found("REPORT") == {"Report_2024.PDF", "report-2024.pdf"}
    assert found("t_2") == {"Report_2024.PDF"}  # "_" is a character, not any character
    assert found("0%") == {"100%.md"} and found("%") == {"100%.md"}
    assert found("k\\s") == {"back\\slash.txt"}
    assert found("zzz") == set()


@pytest.mark.parametrize("sort_by", ["name", "size", "created_at"])
def test_sorting_pages_and_ties(repo: LibraryRepository, jobs: JobRepository, ws: str, sort_by: str) -> None:
    lib = library(ws)
    repo.add_library(lib)
    docs = [document(lib, name, size=size, created_at=NOW + size, id=f"00000000-0000-4000-8000-00000000000{i}")
            for i, (name, size) in enumerate([("b.md", 2), ("a.md", 1), ("c.md", 3), ("a.md", 1)])]
    for doc in docs:
        add(repo, jobs, doc)

    def page(descending: bool, offset: int = 0, limit: int = 10) -> list[str]:
        rows, total = repo.list_documents(lib.id, search=None, sort_by=sort_by, descending=descending,
                                          offset=offset, limit=limit)
        assert total == 4
        return [r.id for r in rows]

    ascending = [docs[1].id, docs[3].id, docs[0].id, docs[2].id]  # the two a.md (size 1) by id
    assert page(False) == ascending and page(True) == list(reversed(ascending))
    assert page(False, offset=1, limit=2) == ascending[1:3]


def test_document_reads_writes_and_deletes(repo: LibraryRepository, jobs: JobRepository, ws: str,
                                           other_ws: str) -> None:
    lib = library(ws)
    repo.add_library(lib)
    doc, gone = document(lib), document(lib, "gone.md")
    add(repo, jobs, doc)
    add(repo, jobs, gone)
    assert repo.get_document(ws, lib.id, doc.id) == doc and repo.get_document(other_ws, lib.id, doc.id) is None
    assert repo.document(doc.id) == doc and repo.documents([doc.id, "nope"]) == {doc.id: doc}
    assert repo.documents([]) == {}
    assert repo.update_document(ws, lib.id, doc.id, {"name": "b.md", "attributes": {"k": True}})
    assert not repo.update_document(other_ws, lib.id, doc.id, {"name": "x"})
    assert repo.set_status(doc.id, "Completed", tokens=2**40, chunks=7, text_key="t", last_processed_at=NOW + 1)
    done = dataclasses.replace(doc, name="b.md", attributes={"k": True}, process_status="Completed", tokens=2**40,
                               chunks=7, text_key="t", last_processed_at=NOW + 1)
    assert repo.document(doc.id) == done
    assert repo.requeue(doc.id, jobs.new_row(ws, "library.ingest", {}, now=2), "Queued")
    assert repo.document(doc.id) == dataclasses.replace(done, process_status="Queued")
    assert repo.delete_document(other_ws, lib.id, gone.id) is None
    assert repo.delete_document(ws, lib.id, gone.id) == gone and repo.document(gone.id) is None
    assert not repo.set_status(gone.id, "Failed") and not repo.requeue(gone.id, jobs.new_row(ws, "k", {}, now=3), "Q")
    assert repo.delete_library(other_ws, lib.id) is None
    assert [d.id for d in repo.delete_library(ws, lib.id) or []] == [doc.id]
    assert repo.get_library(ws, lib.id) is None and repo.document(doc.id) is None
    assert repo.delete_library(ws, lib.id) is None
