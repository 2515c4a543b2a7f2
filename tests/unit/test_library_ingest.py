"""The libraries service and its ingestion job on a real database and blob store, with a fake embedder and the
exact local index: statuses, what a failure leaves on the document, a document deleted while it is processed,
reprocessing, deletes that cascade to chunks and blobs, and the per-workspace and per-library limits."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from mistral_gateway.engines.base import Embeddings
from mistral_gateway.errors import BadRequest, GatewayError, NotFound
from mistral_gateway.protocol.libraries import DocumentListQuery, LibraryIn, LibraryInUpdate
from mistral_gateway.services.files import UploadSink
from mistral_gateway.services.libraries import INGEST_KIND, LibraryLimits, LibraryService
from mistral_gateway.services.library_ingest import LibraryIngest
from mistral_gateway.services.library_search import LibrarySearch
from mistral_gateway.storage.blobs import LocalBlobStore
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.jobs import JobRepository
from mistral_gateway.storage.libraries import LibraryRepository
from mistral_gateway.storage.library_index_local import LocalChunkIndex
from mistral_gateway.storage.tokens import TokenRepository

WORDS = ("apple", "river", "engine", "violet", "harbor", "quartz", "meadow", "signal")


async def embed(texts: list[str]) -> Embeddings:
    """A bag of known words: texts sharing words point the same way (deterministic, no model)."""
    vectors = [[float(t.lower().count(w)) + 0.01 for w in WORDS] for t in texts]
    return Embeddings(vectors, [len(t.split()) for t in texts])


class Env:
    def __init__(self, db: Database, tmp_path: Path, **limits: int) -> None:
        self.repo = LibraryRepository(db)
        self.blobs = LocalBlobStore(tmp_path / "blobs")
        self.index = LocalChunkIndex(tmp_path / "index" / "index.sqlite")
        self.jobs = JobRepository(db)
        self.service = LibraryService(self.repo, self.blobs, self.index, self.jobs,
                                      LibraryLimits(**{"max_libraries": 5, "max_documents": 5,
                                                       "max_document_bytes": 10_000, **limits}))
        self.embed: Any = embed
        self.ingest = LibraryIngest(self.repo, self.blobs, self.index, lambda texts: self.embed(texts),
                                    self._no_ocr, max_pages=10)
        self.search = LibrarySearch(self.repo, self.index, lambda texts: self.embed(texts), top_k=3)

    @staticmethod
    async def _no_ocr() -> Any:
        raise AssertionError("text documents need no OCR")

    def upload(self, ws: str, library_id: str, data: bytes, name: str = "notes.md") -> Any:
        sink = self.service.open_upload()
        try:  # as the upload handler does: what was not kept is discarded
            sink.write(data)
            return self.service.upload(ws, "tok_1", library_id, sink, name)
        except BaseException:
            sink.abort()
            raise

    def run(self, document_id: str, attempt: int = 1, max_attempts: int = 3) -> None:
        async def blocking(fn: Any, *args: Any) -> Any:
            return fn(*args)

        job = SimpleNamespace(payload={"document_id": document_id}, attempt=attempt,
                              record=SimpleNamespace(max_attempts=max_attempts), run_blocking=blocking)
        asyncio.run(self.ingest.handler(job))  # type: ignore[arg-type]

    def queued(self) -> list[str]:
        with self.jobs._db.session() as s:  # the jobs the uploads saved, in order
            from mistral_gateway.storage.tables import JobRow
            return [r.payload["document_id"] for r in s.query(JobRow).filter(JobRow.kind == INGEST_KIND)
                    .order_by(JobRow.created_at)]


@pytest.fixture
def ws(db: Database) -> str:
    return TokenRepository(db).ensure_workspace("default", 1_700_000_000).id


@pytest.fixture
def env(db: Database, tmp_path: Path) -> Env:
    return Env(db, tmp_path)


def test_an_upload_is_queued_with_its_job_then_processed_and_found(env: Env, ws: str) -> None:
    library = env.service.create(ws, "tok_1", LibraryIn(name="docs", chunk_size=100))
    text = ("The apple orchard sits by the river. " * 3 + "\n\n" + "The quartz engine hums at the harbor. " * 3)
    doc, created = env.upload(ws, library.id, text.encode())
    assert created and (doc.process_status, doc.processing_status, doc.size) == ("todo", "Running", len(text))
    assert doc.hash == hashlib.sha256(text.encode()).hexdigest()[:32]
    assert env.queued() == [doc.id]  # saved in the same transaction as the document
    env.run(doc.id)
    done = env.service.get_document(ws, library.id, doc.id)
    assert (done.process_status, done.processing_status) == ("done", "Completed")
    assert done.tokens_processing_total > 0 and done.last_processed_at is not None
    assert env.service.text_content(ws, library.id, doc.id).text == text
    hits = asyncio.run(env.search.search(ws, [library.id], "quartz engine harbor"))
    assert hits and "quartz engine" in hits[0].hit.text and hits[0].document_name == "notes.md"
    listed = env.service.get(ws, library.id)
    assert (listed.nb_documents, listed.total_size) == (1, len(text))


def test_the_same_bytes_again_are_the_same_document(env: Env, ws: str) -> None:
    library = env.service.create(ws, None, LibraryIn(name="docs"))
    first, created = env.upload(ws, library.id, b"apple river")
    again, created_again = env.upload(ws, library.id, b"apple river", "other-name.txt")
    assert created and not created_again and again.id == first.id and again.name == "notes.md"
    other = env.service.create(ws, None, LibraryIn(name="other"))
    assert env.upload(ws, other.id, b"apple river")[1]  # another library keeps its own copy
    assert len(env.queued()) == 2


def test_refusals_happen_before_anything_is_kept(env: Env, ws: str, tmp_path: Path) -> None:
    library = env.service.create(ws, None, LibraryIn(name="docs"))
    with pytest.raises(BadRequest) as empty:
        env.upload(ws, library.id, b"")
    assert empty.value.code == "EMPTY_DOCUMENT"
    with pytest.raises(BadRequest) as binary:
        env.upload(ws, library.id, b"\x00\xff\xfe\x00" * 100, "blob.bin")
    assert binary.value.code == "UNSUPPORTED_DOCUMENT_TYPE"
    with pytest.raises(GatewayError) as large:
        env.upload(ws, library.id, b"a" * 10_001)
    assert large.value.status == 413
    with pytest.raises(NotFound):
        env.upload(ws, "no-such-library", b"apple")
    assert env.queued() == [] and env.service.get(ws, library.id).nb_documents == 0
    assert not [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]  # the refused bytes are gone


def test_limits_on_libraries_and_documents(db: Database, tmp_path: Path, ws: str) -> None:
    env = Env(db, tmp_path, max_libraries=2, max_documents=2)
    library = env.service.create(ws, None, LibraryIn(name="a"))
    env.service.create(ws, None, LibraryIn(name="b"))
    with pytest.raises(BadRequest) as libs:
        env.service.create(ws, None, LibraryIn(name="c"))
    assert libs.value.code == "LIBRARY_LIMIT"
    env.upload(ws, library.id, b"one")
    env.upload(ws, library.id, b"two")
    with pytest.raises(BadRequest) as docs:
        env.upload(ws, library.id, b"three")
    assert docs.value.code == "DOCUMENT_LIMIT"


def test_a_failure_on_the_last_attempt_shows_on_the_document(env: Env, ws: str) -> None:
    library = env.service.create(ws, None, LibraryIn(name="docs"))
    doc, _ = env.upload(ws, library.id, b"apple river")

    async def broken(texts: list[str]) -> Embeddings:
        raise RuntimeError("engine crashed")

    env.embed = broken
    with pytest.raises(RuntimeError):
        env.run(doc.id, attempt=1, max_attempts=2)  # retried by the runner: the document still says Running
    assert env.service.get_document(ws, library.id, doc.id).processing_status == "Running"
    with pytest.raises(RuntimeError):
        env.run(doc.id, attempt=2, max_attempts=2)
    failed = env.service.status(ws, library.id, doc.id)
    assert (failed.process_status, failed.processing_status) == ("error", "Failed: processing failed (RuntimeError)")
    with pytest.raises(BadRequest) as no_text:
        env.service.text_content(ws, library.id, doc.id)
    assert no_text.value.code == "DOCUMENT_NOT_PROCESSED"
    env.embed = embed  # reprocess: a new job, and this time it works
    env.service.reprocess(ws, library.id, doc.id)
    assert env.queued() == [doc.id, doc.id]
    env.run(doc.id)
    assert env.service.status(ws, library.id, doc.id).processing_status == "Completed"


def test_a_document_deleted_while_processed_leaves_nothing(env: Env, ws: str) -> None:
    library = env.service.create(ws, None, LibraryIn(name="docs", chunk_size=100))
    doc, _ = env.upload(ws, library.id, b"violet meadow signal. " * 50)

    async def deleting(texts: list[str]) -> Embeddings:
        env.service.delete_document(ws, library.id, doc.id)  # a DELETE arrives mid-way
        return await embed(texts)

    env.embed = deleting
    env.run(doc.id)
    env.embed = embed
    assert asyncio.run(env.search.search(ws, [library.id], "violet meadow")) == []
    assert env.index.search([library.id], "violet", np.ones(len(WORDS), np.float32), 5) == []


def test_reprocessing_replaces_the_chunks_and_the_text(env: Env, ws: str, tmp_path: Path) -> None:
    library = env.service.create(ws, None, LibraryIn(name="docs"))
    doc, _ = env.upload(ws, library.id, b"harbor signal")
    env.run(doc.id)
    before = {p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()}
    env.service.reprocess(ws, library.id, doc.id)
    env.run(doc.id)
    after = {p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()}
    assert len(before) == len(after) == 2  # the upload and one extracted text: the old text was removed
    hits = env.index.search([library.id], "harbor", np.ones(len(WORDS), np.float32), 10)
    assert [(h.document_id, h.index) for h in hits] == [(doc.id, 0)]


def test_deleting_a_library_removes_documents_chunks_and_blobs(env: Env, ws: str, tmp_path: Path) -> None:
    library = env.service.create(ws, None, LibraryIn(name="docs"))
    for text in (b"apple river", b"quartz engine"):
        env.run(env.upload(ws, library.id, text)[0].id)
    gone = env.service.delete(ws, library.id)
    assert (gone.id, gone.nb_documents) == (library.id, 2)
    with pytest.raises(NotFound):
        env.service.get(ws, library.id)
    assert env.index.search([library.id], "apple", np.ones(len(WORDS), np.float32), 10) == []
    assert not [p for p in (tmp_path / "blobs").rglob("*") if p.is_file() and ".tmp" not in p.parts]


def test_workspaces_see_only_their_own(env: Env, ws: str, db: Database) -> None:
    other = TokenRepository(db).ensure_workspace("other", 1_700_000_000).id
    library = env.service.create(ws, None, LibraryIn(name="docs"))
    doc, _ = env.upload(ws, library.id, b"apple river")
    env.run(doc.id)
    assert env.service.list(other).data == []
    for call in (lambda: env.service.get(other, library.id),
                 lambda: env.service.update(other, library.id, LibraryInUpdate(name="x")),
                 lambda: env.service.delete(other, library.id),
                 lambda: env.service.get_document(other, library.id, doc.id),
                 lambda: env.service.delete_document(other, library.id, doc.id),
                 lambda: env.service.list_documents(other, library.id, DocumentListQuery()),
                 lambda: env.upload(other, library.id, b"x")):
        with pytest.raises(NotFound):
            call()
    assert asyncio.run(env.search.search(other, [library.id], "apple river")) == []  # its id names nothing there
    assert env.service.get_document(ws, library.id, doc.id).process_status == "done"


def test_the_upload_sink_stops_an_oversize_body_early(env: Env) -> None:
    sink = env.service.open_upload()
    assert isinstance(sink, UploadSink)
    sink.write(b"a" * 10_000)
    with pytest.raises(GatewayError) as large:
        sink.write(b"a")
    assert large.value.status == 413
    sink.abort()


def test_processing_is_recorded_as_the_uploaders_usage(tmp_path: Path) -> None:
    from mistral_gateway.config import ModelEntry, Settings
    from mistral_gateway.services.container import build_services

    services = build_services(Settings(data_dir=tmp_path / "data", bootstrap_dev_token=False, models=[
        ModelEntry(id="fake-embed", aliases=["mistral-embed"], engine="fake", capabilities=[])]))
    try:
        _, token = services.tokens.create("uploader", workspace="team")
        assert services.libraries is not None
        library = services.libraries.create(token.workspace_id, token.id, LibraryIn(name="docs"))
        sink = services.libraries.open_upload()
        sink.write(b"apple river " * 40)
        doc, _ = services.libraries.upload(token.workspace_id, token.id, library.id, sink, "a.txt")
        handler = services.job_runner.handlers.get(INGEST_KIND)  # run as the job runner would run it
        assert handler is not None

        async def blocking(fn: Any, *args: Any) -> Any:
            return fn(*args)

        asyncio.run(handler(SimpleNamespace(payload={"document_id": doc.id}, attempt=1,  # type: ignore[arg-type]
                                            record=SimpleNamespace(max_attempts=3), run_blocking=blocking)))
        services.usage.flush()
        rows, _ = services.usage.list()
        done = services.libraries.get_document(token.workspace_id, library.id, doc.id)
        assert [(r.operation, r.token_id, r.workspace, r.model, r.prompt_tokens) for r in rows] == [
            (INGEST_KIND, token.id, "team", "mistral-embed", done.tokens_processing_total)]
        assert done.tokens_processing_total > 0
    finally:
        services.close()
