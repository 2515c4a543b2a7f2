"""The library index contract, run against every implementation: the local one (SQLite + numpy) and pgvector in a
real PostgreSQL 16 (``tests/pgvector_cluster.py``; skipped, saying why, only when the pgserver wheel is missing)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest

from db_backends import PostgresServer
from mistral_gateway.storage.library_index import MAX_K, ChunkIndex, IndexedChunk
from mistral_gateway.storage.library_index_local import LocalChunkIndex
from mistral_gateway.storage.library_index_pg import LibraryIndexUnavailable, PgVectorChunkIndex, conninfo
from pgvector_cluster import PGSERVER_MISSING, pgserver_bindir, pgvector_cluster

DIMS = 8
Factory = Callable[..., ChunkIndex]


def unit(*weights: float) -> np.ndarray:
    v = np.zeros(DIMS, dtype=np.float32)
    v[:len(weights)] = weights
    return v / np.linalg.norm(v)


def chunk(index: int, text: str, *weights: float, page: int | None = None) -> IndexedChunk:
    return IndexedChunk(index, text, unit(*weights), page)


@pytest.fixture(scope="session")
def pgvector_url() -> Iterator[str]:
    bindir = pgserver_bindir()
    if bindir is None:
        pytest.skip(PGSERVER_MISSING)
    with pgvector_cluster(bindir) as url:
        yield url


@pytest.fixture(params=["local", "pgvector"])
def make_index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    opened: list[ChunkIndex] = []
    if request.param == "pgvector":
        url = request.getfixturevalue("pgvector_url")
        with psycopg.connect(conninfo(url), autocommit=True) as db:  # each test starts from an empty table
            db.execute("DROP TABLE IF EXISTS library_vectors, library_chunks")

        def factory(**options: object) -> ChunkIndex:
            opened.append(PgVectorChunkIndex(url, **options))
            return opened[-1]
    else:
        def factory(**options: object) -> ChunkIndex:
            opened.append(LocalChunkIndex(tmp_path / "libraries" / "index.sqlite", **options))
            return opened[-1]
    yield factory
    for index in opened:
        index.close()


def test_search_orders_by_similarity_and_reports_chunk_fields(make_index: Factory) -> None:
    index = make_index(hybrid=False)
    index.replace("lib", "doc", [chunk(0, "north", 1, 0), chunk(1, "north-east", 1, 1, page=3),
                                 chunk(2, "east", 0, 1)])
    hits = index.search(["lib"], "", unit(1, 0.2), 3)
    assert [h.text for h in hits] == ["north", "north-east", "east"]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert (hits[1].library_id, hits[1].document_id, hits[1].index, hits[1].page) == ("lib", "doc", 1, 3)
    assert hits[0].score == pytest.approx(float(unit(1, 0.2) @ unit(1, 0)), abs=1e-5)


def test_replace_makes_the_document_exactly_its_new_chunks(make_index: Factory) -> None:
    index = make_index()
    index.replace("lib", "doc", [chunk(i, f"old {i}", 1, i) for i in range(5)])
    index.replace("lib", "doc", [chunk(0, "new", 1, 0)])  # reprocessed: fewer chunks
    hits = index.search(["lib"], "old new", unit(1, 0), 10)
    assert [(h.index, h.text) for h in hits] == [(0, "new")]


def test_delete_document_and_library(make_index: Factory) -> None:
    index = make_index()
    index.replace("lib", "a", [chunk(0, "alpha", 1)])
    index.replace("lib", "b", [chunk(0, "beta", 1)])
    index.replace("other", "c", [chunk(0, "gamma", 1)])
    index.delete_document("lib", "a")
    assert [h.document_id for h in index.search(["lib", "other"], "", unit(1), 10)] in (["b", "c"], ["c", "b"])
    index.delete_library("lib")
    assert [h.document_id for h in index.search(["lib", "other"], "alpha beta", unit(1), 10)] == ["c"]
    index.replace("lib", "d", [chunk(0, "delta", 1)])  # a deleted library's id can be used again
    assert [h.document_id for h in index.search(["lib"], "", unit(1), 10)] == ["d"]


def test_libraries_are_isolated(make_index: Factory) -> None:
    index = make_index()
    index.replace("mine", "m", [chunk(0, "the secret recipe is mine", 0, 1)])
    index.replace("theirs", "t", [chunk(0, "the secret recipe is theirs", 1, 0)])
    hits = index.search(["mine"], "secret recipe theirs", unit(1, 0), 10)
    assert [h.document_id for h in hits] == ["m"]
    assert {h.library_id for h in index.search(["mine", "theirs"], "recipe", unit(1, 0), 10)} == {"mine", "theirs"}


def test_k_bounds_and_empty_inputs(make_index: Factory) -> None:
    index = make_index()
    index.replace("lib", "doc", [chunk(i, f"chunk {i}", 1, i / 10) for i in range(MAX_K + 5)])
    assert index.search(["lib"], "chunk", unit(1), 0) == []
    assert index.search(["lib"], "chunk", unit(1), -3) == []
    assert len(index.search(["lib"], "chunk", unit(1), 1)) == 1
    assert len(index.search(["lib"], "chunk", unit(1), 10_000)) == MAX_K
    assert index.search([], "chunk", unit(1), 5) == []
    assert index.search(["unknown"], "chunk", unit(1), 5) == []
    index.replace("empty", "nothing", [])
    assert index.search(["empty"], "chunk", unit(1), 5) == []
    assert index.search(["lib"], "", np.ones(DIMS + 4, dtype=np.float32) / 4, 5) == []  # another model's size


def test_hybrid_ranks_an_exact_keyword_match_first(make_index: Factory) -> None:
    texts = ["invoice totals for the quarter", "the quarterly report of sales", "zq-7781 part number sheet"]
    vectors = [(1, 0.1), (1, 0.05), (0.2, 1)]  # the query's vector points at the first two
    for hybrid, first in ((False, "invoice totals for the quarter"), (True, "zq-7781 part number sheet")):
        index = make_index(hybrid=hybrid)
        index.replace("lib", "doc", [chunk(i, t, *v) for i, (t, v) in enumerate(zip(texts, vectors, strict=True))])
        assert index.search(["lib"], "which sheet has part zq-7781?", unit(1, 0.1), 3)[0].text == first


def test_writers_and_readers_in_threads(make_index: Factory) -> None:
    index = make_index()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for round_ in range(10):
                index.replace("lib", f"doc{n}", [chunk(i, f"doc{n} round {round_}", 1, n, i) for i in range(3)])
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(20):
                for hit in index.search(["lib"], "round", unit(1, 1), 10):
                    assert hit.text.startswith(hit.document_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)] + \
        [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    hits = index.search(["lib"], "", unit(1, 1), 20)
    assert sorted((h.document_id, h.index) for h in hits) == [(f"doc{n}", i) for n in range(3) for i in range(3)]
    assert {h.text.split(" round ")[1] for h in hits} == {"9"}


def test_two_index_objects_share_one_store(make_index: Factory) -> None:
    """Two servers on one data dir or database: a change by one is seen by the other's next search."""
    first, second = make_index(), make_index()
    first.replace("lib", "doc", [chunk(0, "version one", 1)])
    assert [h.text for h in second.search(["lib"], "", unit(1), 5)] == ["version one"]
    first.replace("lib", "doc", [chunk(0, "version two", 1)])
    assert [h.text for h in second.search(["lib"], "", unit(1), 5)] == ["version two"]
    first.delete_library("lib")
    assert second.search(["lib"], "", unit(1), 5) == []


@pytest.mark.postgresql
def test_a_server_without_pgvector_fails_at_startup_saying_so(postgres_server: PostgresServer) -> None:
    """The suite's PostgreSQL (scripts/pg_test_cluster.sh: Debian's, which has no pgvector package)."""
    with postgres_server.database() as url, psycopg.connect(conninfo(url)) as db:
        available = db.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
        if available is not None:
            pytest.skip("this PostgreSQL has pgvector: nothing to refuse")
        with pytest.raises(LibraryIndexUnavailable, match="cannot create the pgvector extension"):
            PgVectorChunkIndex(url)


def test_pgvector_needs_a_postgresql_url() -> None:
    with pytest.raises(LibraryIndexUnavailable, match="needs a PostgreSQL URL"):
        PgVectorChunkIndex("sqlite:///gateway.db")


@pytest.mark.parametrize("query", ["_ foo", "___", '"', "NEAR(a b)", "a* OR b", "😀 foo", "foo_bar", "it's & | !", ""])
def test_any_query_text_is_safe(make_index: Factory, query: str) -> None:
    """Query text is user input: never keyword-search syntax, never an error."""
    index = make_index()
    index.replace("lib", "doc", [chunk(0, "foo bar", 1)])
    assert [h.text for h in index.search(["lib"], query, unit(1), 3)] == ["foo bar"]
