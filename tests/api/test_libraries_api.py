"""Libraries over HTTP in both dialects, on SQLite and PostgreSQL, with the fake engines (the fake embedding model
stands in for MiniLM): library CRUD with document counts and sizes, uploads reaching ``done``, bad inputs in each
dialect's error shape, duplicates, listing, cascading deletes (rows, blobs and index chunks), workspace isolation,
a document deleted while it is processed, and processing failures shown with their reason.

Each test works in workspaces of its own, so counts and limits never depend on another test.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
from starlette.testclient import TestClient

from db_backends import BACKENDS, PostgresServer
from dialect_support import DialectApi, data, error
from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.http.app import create_app
from mistral_gateway.registry import Registry
from mistral_gateway.services.container import Services, build_services
from mistral_gateway.storage.library_index import ChunkHit

DIALECTS = ("native", "lowcode")
MAX_BYTES = 4096
MAX_LIBRARIES = 4
MAX_DOCUMENTS = 5
TEXT_WAIT = 3.0  # library_text_wait_seconds: ample for the fake engines, short for the test that runs it out
NOTES = b"# Notes\n\nThe sky over the harbour is green on Tuesdays.\n"
REGISTRY = Registry.load()
LIBRARY_OPS = [op for op in REGISTRY if op.category == "Libraries"]


class Api(DialectApi):
    def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        r = self(method, path, **kw)
        if status != 200:
            assert r.status_code == status, r.text
            r.status_code = 200  # the body's shape is checked the same way
        return data(r, self.dialect)

    def library(self, name: str = "docs", **fields: Any) -> dict[str, Any]:
        return self.ok("POST", "/libraries", 201, json={"name": name, **fields})  # type: ignore[no-any-return]

    def upload(self, library_id: str, name: str = "notes.md", content: bytes = NOTES,
               status: int = 201) -> dict[str, Any]:
        return self.ok("POST", f"/libraries/{library_id}/documents", status,  # type: ignore[no-any-return]
                       files={"file": (name, content)})

    def document(self, library_id: str, document_id: str) -> dict[str, Any]:
        return self.ok("GET", f"/libraries/{library_id}/documents/{document_id}")  # type: ignore[no-any-return]

    def settled(self, library_id: str, document_id: str) -> dict[str, Any]:
        """The document once its processing has ended (a bounded wait for the job runner, not a timing check)."""
        for _ in range(1200):
            doc = self.document(library_id, document_id)
            if doc["process_status"] not in ("todo", "in_progress"):
                return doc
            time.sleep(0.025)
        raise AssertionError(f"document {document_id} still {doc['process_status']}")


@dataclass
class Env:
    client: TestClient
    services: Services
    workspaces: dict[str, str] = field(default_factory=dict)  # token -> workspace id

    def api(self, dialect: str, workspace: str) -> Api:
        token, record = self.services.tokens.create(workspace, workspace=workspace)
        self.workspaces[token] = record.workspace_id
        return Api(self.client, dialect, token)

    def workspace_of(self, api: Api) -> str:
        return self.workspaces[api.token]

    def index_hits(self, library_id: str, query: str = "sky harbour green") -> list[ChunkHit]:
        """What the index itself holds for a search (not filtered by the document rows as retrieval is)."""
        search = self.services.library_search
        assert search is not None
        vectors = self.client.portal.call(search.embed, [query]).vectors  # type: ignore[union-attr]
        vector = np.asarray(vectors[0], dtype=np.float32)
        return search.index.search([library_id], query, vector / np.linalg.norm(vector), 1000)

    def retrieved(self, workspace: str, library_id: str, query: str = "sky harbour green") -> list[Any]:
        search = self.services.library_search
        assert search is not None
        return self.client.portal.call(search.search, workspace, [library_id], query, 50)  # type: ignore[union-attr]


def _settings(data_dir: Path, database_url: str | None) -> Settings:
    return Settings(data_dir=data_dir, database_url=database_url, bootstrap_dev_token=False,
                    max_libraries_per_workspace=MAX_LIBRARIES, max_documents_per_library=MAX_DOCUMENTS,
                    library_max_document_bytes=MAX_BYTES, job_poll_seconds=0.05, library_text_wait_seconds=TEXT_WAIT,
                    models=[
                        ModelEntry(id="fake-chat", aliases=["mistral-small-latest"], engine="fake",
                                   capabilities=["completion_chat"]),
                        ModelEntry(id="fake-embed", aliases=["mistral-embed"], engine="fake", capabilities=[])])


@pytest.fixture(scope="module", params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data_dir = tmp_path_factory.mktemp("libraries") / "data"
    if request.param == "sqlite":
        yield from _env(_settings(data_dir, None))
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with server.database(server.migrated_template()) as url:
        yield from _env(_settings(data_dir, url))


def _env(settings: Settings) -> Iterator[Env]:
    services = build_services(settings)
    try:
        with TestClient(create_app(services=services)) as client:
            yield Env(client, services)
    finally:
        services.close()


def workspace() -> str:
    return f"ws-{uuid.uuid4().hex[:16]}"


@pytest.fixture(params=DIALECTS)
def api(request: pytest.FixtureRequest, env: Env) -> Api:
    return env.api(request.param, workspace())


# -- libraries ----------------------------------------------------------------------------------------------------

def test_library_crud_with_document_counts_and_sizes(env: Env, api: Api) -> None:
    created = api.library("handbook", description="How we work", chunk_size=500)
    library_id = created["id"]
    assert (created["name"], created["description"], created["chunk_size"]) == ("handbook", "How we work", 500)
    assert (created["nb_documents"], created["total_size"], created["owner_type"]) == (0, 0, "Workspace")
    assert api.library("defaults")["chunk_size"] == 1000  # DEFAULT_CHUNK_SIZE

    first = api.upload(library_id, "a.md", NOTES)
    second = api.upload(library_id, "b.txt", b"plain words\n" * 10)
    got = api.ok("GET", f"/libraries/{library_id}")
    assert (got["nb_documents"], got["total_size"]) == (2, len(NOTES) + 120)
    assert got["updated_at"] >= created["updated_at"]
    listed = {lib["id"]: lib for lib in api.ok("GET", "/libraries")["data"]}
    assert set(listed) == {library_id, *(i for i in listed if listed[i]["name"] == "defaults")}
    assert (listed[library_id]["nb_documents"], listed[library_id]["total_size"]) == (2, len(NOTES) + 120)

    updated = api.ok("PUT", f"/libraries/{library_id}", json={"name": "manual"})
    assert (updated["name"], updated["description"], updated["chunk_size"]) == ("manual", "How we work", 500)
    updated = api.ok("PUT", f"/libraries/{library_id}", json={"description": "Still how we work"})
    assert (updated["name"], updated["description"]) == ("manual", "Still how we work")
    updated = api.ok("PATCH", f"/libraries/{library_id}", json={"name": "patched"})  # as the SDK 3.x sends it
    assert (updated["name"], updated["description"]) == ("patched", "Still how we work")
    updated = api.ok("PUT", f"/libraries/{library_id}", json={"name": "manual"})

    api.settled(library_id, first["id"])
    r = api("DELETE", f"/libraries/{library_id}/documents/{first['id']}")
    assert r.status_code == 204 and r.content == b""
    got = api.ok("GET", f"/libraries/{library_id}")
    assert (got["nb_documents"], got["total_size"]) == (1, 120)

    deleted = api.ok("DELETE", f"/libraries/{library_id}")
    assert (deleted["id"], deleted["name"], deleted["nb_documents"]) == (library_id, "manual", 1)
    api.fails(404, "GET", f"/libraries/{library_id}", "LIBRARY_NOT_FOUND")
    api.fails(404, "GET", f"/libraries/{library_id}/documents/{second['id']}")
    assert library_id not in {lib["id"] for lib in api.ok("GET", "/libraries")["data"]}


def test_library_name_description_and_chunk_size_limits(api: Api) -> None:
    for body in ({"name": ""}, {"name": "x" * 256}, {"name": "ok", "description": "d" * 10_001},
                 {"name": "ok", "chunk_size": 99}, {"name": "ok", "chunk_size": 8001}, {"description": "no name"},
                 {"name": 3}):
        r = api("POST", "/libraries", json=body)
        assert r.status_code in (400, 422), (body, r.text)
        error(r, api.dialect, r.status_code)
    library_id = api.library("x" * 255, description="d" * 10_000, chunk_size=8000)["id"]
    for body in ({"name": ""}, {"name": "x" * 256}, {"description": "d" * 10_001}):
        r = api("PUT", f"/libraries/{library_id}", json=body)
        assert r.status_code in (400, 422), (body, r.text)
        error(r, api.dialect, r.status_code)
    assert api.ok("GET", f"/libraries/{library_id}")["name"] == "x" * 255


def test_library_and_document_count_limits(api: Api) -> None:
    ids = [api.library(f"lib {i}")["id"] for i in range(MAX_LIBRARIES)]
    api.fails(400, "POST", "/libraries", "LIBRARY_LIMIT", json={"name": "one too many"})
    api.ok("DELETE", f"/libraries/{ids[0]}")
    ids[0] = api.library("room again")["id"]  # deleting one makes room

    for i in range(MAX_DOCUMENTS):
        api.upload(ids[1], f"d{i}.txt", f"document {i}\n".encode())
    api.fails(400, "POST", f"/libraries/{ids[1]}/documents", "DOCUMENT_LIMIT",
              files={"file": ("more.txt", b"one too many\n")})
    api.upload(ids[2], "elsewhere.txt", b"another library has room\n")


# -- uploads ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "content", "mime", "extension"), [
    ("notes.md", NOTES, "text/markdown", "md"),
    ("README.markdown", b"Intro\n=====\n\n* one\n* two\n", "text/markdown", "markdown"),
    ("plain.txt", "Caf\u00e9 cr\u00e8me, na\u00efve r\u00e9sum\u00e9.\n".encode(), "text/plain", "txt"),
    ("LICENSE", b"Permission is hereby granted, free of charge.\n", "text/plain", None),
    ("long.txt", ("word " * 700).encode(), "text/plain", "txt"),  # several chunks
], ids=["markdown", "markdown-long-extension", "utf8-text", "no-extension", "several-chunks"])
def test_uploads_of_each_supported_type_reach_done(env: Env, api: Api, name: str, content: bytes, mime: str,
                                                    extension: str | None) -> None:
    library_id = api.library()["id"]
    out = api.upload(library_id, name, content)
    assert (out["name"], out["size"], out["mime_type"], out["extension"]) == (name, len(content), mime, extension)
    assert out["process_status"] in ("todo", "in_progress", "done")
    doc = api.settled(library_id, out["id"])
    assert (doc["process_status"], doc["processing_status"]) == ("done", "Completed"), doc
    assert doc["last_processed_at"] and doc["tokens_processing_total"] > 0
    status = api.ok("GET", f"/libraries/{library_id}/documents/{out['id']}/status")
    assert status == {"document_id": out["id"], "process_status": "done", "processing_status": "Completed"}
    text = api.ok("GET", f"/libraries/{library_id}/documents/{out['id']}/text_content")["text"]
    assert text == content.decode("utf-8")
    hits = env.index_hits(library_id, content.decode()[:40])
    assert {h.document_id for h in hits} == {out["id"]}
    chunks = [h.text for h in sorted(hits, key=lambda h: h.index)]
    assert all(c.strip() in text for c in chunks)  # pieces of the text (neighbours overlap a little)
    assert sum(len(c.split()) for c in chunks) >= len(text.split())  # together they hold all of it


def test_bad_uploads_are_4xx_in_the_dialects_shape(api: Api) -> None:
    library_id = api.library()["id"]
    path = f"/libraries/{library_id}/documents"
    binary = b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4
    api.fails(400, "POST", path, "UNSUPPORTED_DOCUMENT_TYPE", files={"file": ("program.bin", binary)})
    api.fails(400, "POST", path, "EMPTY_DOCUMENT", files={"file": ("empty.txt", b"")})
    api.fails(413, "POST", path, files={"file": ("big.txt", b"a" * (MAX_BYTES + 1))})
    api.fails(400, "POST", path, "MISSING_FILE", files={"other": ("notes.md", NOTES)})
    api.fails(400, "POST", path, "MISSING_FILE", data={"file": "not a file part"},
              files={"other": ("x.txt", b"x")})
    r = api("POST", path, json={"file": "notes"})  # not multipart at all
    assert 400 <= r.status_code < 500, r.text
    error(r, api.dialect, r.status_code)
    api.fails(404, "POST", f"/libraries/{uuid.uuid4()}/documents", "LIBRARY_NOT_FOUND",
              files={"file": ("notes.md", NOTES)})
    # nothing refused was kept
    assert api.ok("GET", f"/libraries/{library_id}")["nb_documents"] == 0
    assert api.upload(library_id, "ok.txt", b"a" * MAX_BYTES)["size"] == MAX_BYTES  # the limit itself is fine


def test_a_duplicate_upload_answers_200_with_the_same_document(api: Api) -> None:
    library_id = api.library()["id"]
    first = api.upload(library_id, "notes.md", NOTES)
    again = api.upload(library_id, "copy-of-notes.md", NOTES, status=200)
    assert (again["id"], again["name"]) == (first["id"], "notes.md")
    assert api.ok("GET", f"/libraries/{library_id}")["nb_documents"] == 1
    other = api.library("other")["id"]  # the same bytes in another library are another document
    assert api.upload(other, "notes.md", NOTES)["id"] != first["id"]


def test_nul_characters_are_refused_or_dropped_never_a_500(api: Api) -> None:
    """PostgreSQL cannot store a NUL character in text: every string that reaches it is checked first."""
    library_id = api.library()["id"]
    doc = api.upload(library_id, "a\x00b.md")
    assert "\x00" not in doc["name"]
    path = f"/libraries/{library_id}/documents/{doc['id']}"
    for method, url, kw in [
        ("POST", "/libraries", {"json": {"name": "a\x00b"}}),
        ("POST", "/libraries", {"json": {"name": "ok", "description": "\x00"}}),
        ("PUT", f"/libraries/{library_id}", {"json": {"name": "a\x00b"}}),
        ("GET", f"/libraries/{library_id}/documents", {"params": {"search": "a\x00"}}),
        ("PUT", path, {"json": {"name": "a\x00b"}}),
        ("PUT", path, {"json": {"attributes": {"k": "a\x00b"}}}),
        ("PUT", path, {"json": {"attributes": {"k\x00": 1}}}),
        ("PUT", path, {"json": {"attributes": {"k": ["\x00"]}}}),
    ]:
        r = api(method, url, **kw)
        assert r.status_code in (400, 422), (method, url, kw, r.text)
        error(r, api.dialect, r.status_code)


# -- ids ----------------------------------------------------------------------------------------------------------

def _path(op: Any, values: dict[str, str]) -> str:
    return op.path.removeprefix("/v1").format(**values)


def _body(op: Any) -> dict[str, Any]:
    if op.body == "multipart":
        return {"files": {"file": ("notes.md", NOTES)}}
    return {"json": {"name": "x"}} if op.body == "json" else {}


@pytest.mark.parametrize("bad", ["not-a-uuid", "0" * 300, "%00", "'; drop table libraries; --",
                                 str(uuid.uuid4()).upper(), "{" + str(uuid.uuid4()) + "}"],
                         ids=["word", "long", "nul", "sql", "upper-uuid", "braced-uuid"])
def test_unknown_and_malformed_ids_are_404(api: Api, bad: str) -> None:
    library_id = api.library()["id"]
    document_id = api.upload(library_id)["id"]
    for op in LIBRARY_OPS:
        if not op.path_params:
            continue
        cases = [{"library_id": str(uuid.uuid4()), "document_id": document_id},
                 {"library_id": bad, "document_id": document_id},
                 {"library_id": library_id, "document_id": str(uuid.uuid4())},
                 {"library_id": library_id, "document_id": bad}]
        for values in cases:
            if "document_id" not in op.path_param_names and values["library_id"] == library_id:
                continue
            url = _path(op, {k: uuid_safe(v) for k, v in values.items()})
            r = api(op.method, url, **_body(op))
            assert r.status_code == 404, (op.id, values, r.text)
            error(r, api.dialect, 404)


def uuid_safe(value: str) -> str:
    """A path segment carrying ``value`` (percent-encoded where it must be)."""
    return httpx.URL("http://x/").copy_with(path="/" + value).raw_path.decode()[1:]


def test_list_page_and_page_size_bounds(api: Api) -> None:
    library_id = api.library()["id"]
    path = f"/libraries/{library_id}/documents"
    for params in ({"page_size": 0}, {"page_size": 101}, {"page": -1}, {"page": 1_000_001}, {"page_size": "x"},
                   {"sort_by": "hash"}, {"sort_order": "up"}, {"search": "s" * 256}):
        r = api("GET", path, params=params)
        assert r.status_code in (400, 422), (params, r.text)
        error(r, api.dialect, r.status_code)
    body = api.ok("GET", path, params={"page_size": 100, "page": 1_000_000})
    assert body["data"] == [] and body["pagination"]["total_items"] == 0


def test_document_list_search_sort_and_pagination(api: Api) -> None:
    library_id = api.library()["id"]
    files = {"alpha.txt": b"a" * 30, "beta.md": b"b" * 10, "gamma.txt": b"c" * 20, "delta_1%.txt": b"d" * 40}
    ids = {name: api.upload(library_id, name, content)["id"] for name, content in files.items()}
    path = f"/libraries/{library_id}/documents"

    def names(**params: Any) -> list[str]:
        return [d["name"] for d in api.ok("GET", path, params=params)["data"]]

    assert names() == list(reversed(files))  # newest first by default
    assert names(sort_order="asc") == list(files)
    assert names(sort_by="name", sort_order="asc") == ["alpha.txt", "beta.md", "delta_1%.txt", "gamma.txt"]
    assert names(sort_by="name") == ["gamma.txt", "delta_1%.txt", "beta.md", "alpha.txt"]
    assert names(sort_by="size", sort_order="desc") == ["delta_1%.txt", "alpha.txt", "gamma.txt", "beta.md"]
    assert names(search="ALP") == ["alpha.txt"]  # case-insensitive substring of the name
    assert names(search="%") == ["delta_1%.txt"]  # LIKE wildcards are literal
    assert names(search="_") == ["delta_1%.txt"]
    assert names(search=".txt", sort_by="name", sort_order="asc") == ["alpha.txt", "delta_1%.txt", "gamma.txt"]
    seen = []
    for page in range(3):
        body = api.ok("GET", path, params={"page_size": 3, "page": page, "sort_order": "asc"})
        assert body["pagination"] == {"total_items": 4, "total_pages": 2, "current_page": page, "page_size": 3,
                                      "has_more": page == 0}
        seen += [d["id"] for d in body["data"]]
    assert seen == list(ids.values())


# -- deletes ------------------------------------------------------------------------------------------------------

def test_deletes_cascade_to_rows_blobs_and_index_chunks(env: Env, api: Api) -> None:
    library_id = api.library(chunk_size=100)["id"]
    kept = api.upload(library_id, "kept.md", NOTES)
    gone = api.upload(library_id, "gone.md", b"The harbour sky is green, said the second note. " * 5)
    for doc in (kept, gone):
        assert api.settled(library_id, doc["id"])["process_status"] == "done"
    repo = env.services.libraries.repo  # type: ignore[union-attr]
    records = repo.documents([kept["id"], gone["id"]])
    blob_keys = {i: [r.blob_key, r.text_key] for i, r in records.items()}
    assert all(key and env.services.blobs.exists(key) for keys in blob_keys.values() for key in keys)
    assert {h.document_id for h in env.index_hits(library_id)} == {kept["id"], gone["id"]}
    workspace_id = env.workspace_of(api)
    assert {r.hit.document_id for r in env.retrieved(workspace_id, library_id)} == {kept["id"], gone["id"]}

    r = api("DELETE", f"/libraries/{library_id}/documents/{gone['id']}")
    assert r.status_code == 204
    assert repo.document(gone["id"]) is None
    assert not any(env.services.blobs.exists(key) for key in blob_keys[gone["id"]])
    assert {h.document_id for h in env.index_hits(library_id)} == {kept["id"]}
    assert {r.hit.document_id for r in env.retrieved(workspace_id, library_id)} == {kept["id"]}
    api.fails(404, "DELETE", f"/libraries/{library_id}/documents/{gone['id']}", "DOCUMENT_NOT_FOUND")

    api.ok("DELETE", f"/libraries/{library_id}")
    assert repo.document(kept["id"]) is None
    assert not any(env.services.blobs.exists(key) for key in blob_keys[kept["id"]])
    assert env.index_hits(library_id) == []
    assert env.retrieved(workspace_id, library_id) == []
    api.fails(404, "DELETE", f"/libraries/{library_id}", "LIBRARY_NOT_FOUND")


class Gate:
    """Holds the ingestion job inside its embedding step until released (the fake embedder behind it)."""

    def __init__(self, env: Env) -> None:
        self.ingest = env.services.job_runner.handlers.get("library_ingest").__self__  # type: ignore[attr-defined]
        self.inner = self.ingest.embed
        self.entered = threading.Event()
        self.release = threading.Event()

    async def embed(self, texts: list[str]) -> Any:
        self.entered.set()
        await anyio.to_thread.run_sync(self.release.wait, 60)
        return await self.inner(texts)

    def __enter__(self) -> Gate:
        self.ingest.embed = self.embed
        return self

    def __exit__(self, *_: object) -> None:
        self.release.set()
        self.ingest.embed = self.inner


def test_a_document_deleted_while_it_is_processed_leaves_nothing_in_the_index(env: Env, api: Api) -> None:
    library_id = api.library()["id"]
    with Gate(env) as gate:
        doc = api.upload(library_id, "racing.md", NOTES)
        assert gate.entered.wait(60), "the ingestion job never started"
        assert api.document(library_id, doc["id"])["process_status"] == "in_progress"
        assert api("DELETE", f"/libraries/{library_id}/documents/{doc['id']}").status_code == 204
        gate.release.set()
        job = _job_of(env, env.workspace_of(api), doc["id"])
    assert job.status == "succeeded", job
    assert env.index_hits(library_id) == []
    assert env.services.libraries.repo.document(doc["id"]) is None  # type: ignore[union-attr]
    assert api.ok("GET", f"/libraries/{library_id}")["nb_documents"] == 0


def _job_of(env: Env, workspace_id: str, document_id: str) -> Any:
    """The document's ingestion job once it has ended (a bounded wait)."""
    for _ in range(1200):
        jobs, _ = env.services.jobs.list(workspace_id, kind="library_ingest")
        found = [j for j in jobs if j.payload.get("document_id") == document_id]
        if found and found[-1].status not in ("queued", "running"):
            return found[-1]
        time.sleep(0.025)
    raise AssertionError(f"the job of {document_id} never ended")


def test_text_content_waits_for_a_document_still_processed(env: Env, api: Api) -> None:
    library_id = api.library()["id"]
    doc = api.upload(library_id)  # asked at once, as the SDK's example does: answered once processed
    text_path = f"/libraries/{library_id}/documents/{doc['id']}/text_content"
    assert api.ok("GET", text_path)["text"] == NOTES.decode()
    with Gate(env) as gate:  # held longer than the wait: a clear 400, and the document is still processed after
        other = api.upload(library_id, "held.md", b"held back\n")
        assert gate.entered.wait(60), "the ingestion job never started"
        api.fails(400, "GET", f"/libraries/{library_id}/documents/{other['id']}/text_content",
                  "DOCUMENT_NOT_PROCESSED")
    assert api.settled(library_id, other["id"])["process_status"] == "done"
    assert api.ok("GET", f"/libraries/{library_id}/documents/{other['id']}/text_content")["text"] == "held back\n"


def test_processing_failure_shows_error_and_its_reason(api: Api) -> None:
    library_id = api.library()["id"]
    doc = api.upload(library_id, "blank.txt", b" \n\n\t \n")
    settled = api.settled(library_id, doc["id"])
    reason = "no text could be extracted from the document"
    assert (settled["process_status"], settled["processing_status"]) == ("error", f"Failed: {reason}")
    status = api.ok("GET", f"/libraries/{library_id}/documents/{doc['id']}/status")
    assert status["processing_status"] == f"Failed: {reason}"
    api.fails(400, "GET", f"/libraries/{library_id}/documents/{doc['id']}/text_content", "DOCUMENT_NOT_PROCESSED")
    r = api("POST", f"/libraries/{library_id}/documents/{doc['id']}/reprocess")  # retried: the same outcome
    assert r.status_code == 204 and r.content == b""
    assert api.settled(library_id, doc["id"])["processing_status"] == f"Failed: {reason}"


# -- isolation ----------------------------------------------------------------------------------------------------

def test_another_workspaces_libraries_and_documents_are_404_for_every_operation(
        env: Env, api: Api) -> None:
    library_id = api.library("private")["id"]
    document_id = api.upload(library_id)["id"]
    api.settled(library_id, document_id)
    intruder = env.api(api.dialect, workspace())
    assert intruder.ok("GET", "/libraries")["data"] == []
    intruder_library = intruder.library("mine")["id"]
    values = {"library_id": library_id, "document_id": document_id}
    checked = set()
    for op in LIBRARY_OPS:
        if not op.path_params:
            continue
        r = intruder(op.method, _path(op, values), **_body(op))
        assert r.status_code == 404, (op.id, r.text)
        error(r, intruder.dialect, 404)
        if "document_id" in op.path_param_names:  # their document through one's own library: still not there
            r = intruder(op.method, _path(op, {**values, "library_id": intruder_library}), **_body(op))
            assert r.status_code == 404, (op.id, r.text)
        checked.add(op.id)
    assert len(checked) == 11
    assert env.retrieved(env.workspace_of(intruder), library_id) == []
    # untouched by all that
    doc = api.document(library_id, document_id)
    assert (doc["name"], doc["process_status"]) == ("notes.md", "done")
    assert api.ok("GET", f"/libraries/{library_id}")["nb_documents"] == 1


# -- the document operations beyond the seed ----------------------------------------------------------------------

def test_document_update_renames_and_sets_bounded_attributes(api: Api) -> None:
    library_id = api.library()["id"]
    doc = api.upload(library_id)
    api.settled(library_id, doc["id"])
    path = f"/libraries/{library_id}/documents/{doc['id']}"
    attributes = {"year": 2024, "ratio": 0.25, "public": True, "author": "Ada", "reviewed": "2025-06-01T10:00:00Z",
                  "tags": ["x", "y"], "pages": [1, 2], "weights": [0.5, 1], "flags": [True, False], "empty": []}
    out = api.ok("PUT", path, json={"name": "renamed.md", "attributes": attributes})
    assert (out["name"], out["attributes"], out["process_status"], out["size"]) == (
        "renamed.md", attributes, "done", len(NOTES))
    out = api.ok("PUT", path, json={"attributes": {"year": 2025}})  # attributes are replaced whole; name stays
    assert (out["name"], out["attributes"]) == ("renamed.md", {"year": 2025})
    out = api.ok("PUT", path, json={"name": None, "attributes": None})  # null: unchanged
    assert (out["name"], out["attributes"]) == ("renamed.md", {"year": 2025})
    out = api.ok("PATCH", path, json={"attributes": {"year": 2026}})  # as the SDK 3.x sends it
    assert (out["name"], out["attributes"]) == ("renamed.md", {"year": 2026})
    if api.dialect == "lowcode":  # the old URL form reaches it too
        out = api.ok("PATCH", "/libraries/library_id/documents/document_id",
                     params={"library_id": library_id, "document_id": doc["id"]}, json={"attributes": {"year": 2025}})
    else:
        out = api.ok("PATCH", path, json={"attributes": {"year": 2025}})
    assert out["attributes"] == {"year": 2025}
    assert api.document(library_id, doc["id"])["attributes"] == {"year": 2025}
    for body in ({"name": ""}, {"name": "n" * 256}, {"attributes": {str(i): i for i in range(33)}},
                 {"attributes": {"k" * 65: 1}}, {"attributes": {"": 1}}, {"attributes": {"v": "s" * 1001}},
                 {"attributes": {"v": list(range(51))}}, {"attributes": {"v": {"nested": 1}}},
                 {"attributes": {"v": [1, "mixed"]}}, {"attributes": {"v": None}},
                 {"attributes": ["not", "an", "object"]}):
        r = api("PUT", path, json=body)
        assert r.status_code in (400, 422), (body, r.text)
        error(r, api.dialect, r.status_code)
    assert api.document(library_id, doc["id"])["name"] == "renamed.md"
    assert api.ok("GET", f"/libraries/{library_id}/documents", params={"search": "renamed"})["data"][0]["id"] == \
        doc["id"]


def test_reprocess_runs_the_document_again(env: Env, api: Api) -> None:
    library_id = api.library()["id"]
    doc = api.upload(library_id)
    first = api.settled(library_id, doc["id"])
    text_key = env.services.libraries.repo.document(doc["id"]).text_key  # type: ignore[union-attr]
    r = api("POST", f"/libraries/{library_id}/documents/{doc['id']}/reprocess")
    assert r.status_code == 204 and r.content == b""
    again = api.settled(library_id, doc["id"])
    assert again["process_status"] == "done" and again["last_processed_at"] >= first["last_processed_at"]
    assert api.ok("GET", f"/libraries/{library_id}/documents/{doc['id']}/text_content")["text"] == NOTES.decode()
    assert {h.document_id for h in env.index_hits(library_id)} == {doc["id"]}
    new_key = env.services.libraries.repo.document(doc["id"]).text_key  # type: ignore[union-attr]
    assert new_key and (new_key == text_key or not env.services.blobs.exists(text_key))  # the old text not left
