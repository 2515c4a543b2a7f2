"""The default library index: one SQLite file in the data dir holds every chunk (text and vector) and an FTS5
keyword index of the texts. Vector search is exact, over each library's vectors held in memory as one float32 numpy
matrix. Measured against sqlite-vec (6x slower: it scans SQLite pages) and an HNSW index (recall@10 0.81 on clustered
vectors) in docs/library-index.md: exact search has recall 1 and nothing to tune; at 100k chunks it reads ~150 MB a
query, which is its limit.

A library's matrix is reloaded only when the library changed, which any thread or process sharing the data dir may
do: a per-library version row, bumped in the same transaction as the change, says so. The matrices in memory are
bounded (``cache_bytes``, least recently searched dropped first); a search of a dropped library reloads it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mistral_gateway.storage import library_index
from mistral_gateway.storage.library_index import (
    MAX_K,
    ChunkHit,
    IndexedChunk,
    affordable_terms,
    fuse_rankings,
    keyword_terms,
)
from mistral_gateway.storage.permissions import create_private_file, private_dir

__all__ = ["DEFAULT_CACHE_BYTES", "LocalChunkIndex"]

DEFAULT_CACHE_BYTES = 1 << 30  # ~700k chunks of 384 dims in memory; beyond it libraries take turns
_TOKENIZER = "tokenize='porter unicode61 remove_diacritics 2'"
SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, library_id TEXT NOT NULL, document_id TEXT NOT NULL, idx INTEGER NOT NULL,
    page INTEGER, text TEXT NOT NULL, vector BLOB NOT NULL, UNIQUE (document_id, idx));
CREATE INDEX IF NOT EXISTS chunks_library ON chunks (library_id);
CREATE TABLE IF NOT EXISTS versions (library_id TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(text, content='chunks', content_rowid='id', TOKENIZER);
CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, text) VALUES (new.id, new.text); END;
CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END;
""".replace("TOKENIZER", _TOKENIZER)


@dataclass(slots=True)
class _Loaded:
    version: int
    ids: np.ndarray  # int64 chunk ids, one per matrix row
    matrix: np.ndarray  # float32 (rows, dimensions)

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.matrix.nbytes


class LocalChunkIndex:
    def __init__(self, path: Path, *, hybrid: bool = True, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        private_dir(path.parent)
        create_private_file(path)  # SQLite gives its -wal and -shm files the database file's mode
        self._path = path
        self._hybrid = hybrid
        self._cache_bytes = cache_bytes
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._cache: OrderedDict[str, _Loaded] = OrderedDict()
        db = self._connect()
        with _transaction(db, write=True):
            _migrate(db)

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self._path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a write that returned survives a power cut
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def replace(self, library_id: str, document_id: str, chunks: Sequence[IndexedChunk]) -> None:
        db = self._connect()
        with _transaction(db, write=True):
            db.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,))
            db.executemany("INSERT INTO chunks (library_id, document_id, idx, page, text, vector) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           [(library_id, document_id, c.index, c.page, c.text,
                             np.asarray(c.vector, dtype=np.float32).tobytes()) for c in chunks])
            _bump(db, library_id)

    def delete_document(self, library_id: str, document_id: str) -> None:
        db = self._connect()
        with _transaction(db, write=True):
            db.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,))
            _bump(db, library_id)

    def delete_library(self, library_id: str) -> None:
        db = self._connect()
        with _transaction(db, write=True):
            db.execute("DELETE FROM chunks WHERE library_id = ?", (library_id,))
            _bump(db, library_id)  # not deleted: another process's cache must see the change

    def search(self, library_ids: Sequence[str], query: str, vector: np.ndarray, k: int) -> list[ChunkHit]:
        k = min(k, MAX_K)
        library_ids = list(dict.fromkeys(library_ids))
        if k < 1 or not library_ids:
            return []
        depth = max(k, 50) if self._hybrid else k  # fusion looks deeper into each ranking than it returns
        by_vector = self._vector_ranking(library_ids, np.asarray(vector, dtype=np.float32), depth)
        if not self._hybrid:
            return self._hits(by_vector[:k])
        by_keyword = self._keyword_ranking(library_ids, query, depth)
        return self._hits(fuse_rankings([[i for i, _ in by_vector], by_keyword], k))

    def _vector_ranking(self, library_ids: list[str], query: np.ndarray, depth: int) -> list[tuple[int, float]]:
        scored: list[tuple[int, float]] = []
        for library_id in library_ids:
            loaded = self._loaded(library_id)
            if loaded is None or loaded.matrix.shape[1:] != query.shape:  # empty, or another embedding model's
                continue
            # einsum's own loop, not BLAS: as fast for one query (memory-bound) on one core instead of OpenBLAS's
            # threads, which double the CPU and stall behind other work on a busy machine
            scores = np.einsum("ij,j->i", loaded.matrix, query)
            top = np.argpartition(-scores, depth - 1)[:depth] if len(scores) > depth else np.arange(len(scores))
            scored += [(int(loaded.ids[i]), float(scores[i])) for i in top]
        scored.sort(key=lambda s: -s[1])
        return scored[:depth]

    def _keyword_ranking(self, library_ids: list[str], query: str, depth: int) -> list[int]:
        db = self._connect()
        terms = self._affordable_terms(db, keyword_terms(query))
        if not terms:
            return []
        rows = db.execute(
            "SELECT c.id FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid WHERE chunks_fts MATCH ? "
            "AND c.library_id IN (SELECT value FROM json_each(?)) ORDER BY bm25(chunks_fts) LIMIT ?",
            (" OR ".join(f'"{t}"' for t in terms), json.dumps(library_ids), depth))
        return [r[0] for r in rows]

    def _affordable_terms(self, db: sqlite3.Connection, terms: list[str]) -> list[str]:
        """``affordable_terms`` of the query, each counted over the whole index (what ranking reads), up to the
        budget only: a common term costs no more to count than a rare one."""
        budget = library_index.MAX_KEYWORD_POSTINGS
        return affordable_terms(((t, db.execute(
            "SELECT count(*) FROM (SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? LIMIT ?)",
            (f'"{t}"', budget + 1)).fetchone()[0]) for t in terms), budget)

    def _hits(self, ranked: Sequence[tuple[int, float]]) -> list[ChunkHit]:
        if not ranked:
            return []
        rows = self._connect().execute(
            "SELECT id, library_id, document_id, idx, text, page FROM chunks "
            "WHERE id IN (SELECT value FROM json_each(?))", (json.dumps([i for i, _ in ranked]),)).fetchall()
        found = {r[0]: r for r in rows}  # a chunk replaced since the ranking is skipped
        return [ChunkHit(r[1], r[2], r[3], r[4], score, r[5]) for i, score in ranked if (r := found.get(i))]

    def _loaded(self, library_id: str) -> _Loaded | None:
        db = self._connect()
        row = db.execute("SELECT version FROM versions WHERE library_id = ?", (library_id,)).fetchone()
        if row is None:
            return None
        with self._lock:
            cached = self._cache.get(library_id)
            if cached is not None and cached.version == row[0]:
                self._cache.move_to_end(library_id)
                return cached
        with _transaction(db, write=False):  # the version and the rows read from one snapshot
            version = db.execute("SELECT version FROM versions WHERE library_id = ?", (library_id,)).fetchone()[0]
            loaded = _read_matrix(db, library_id, version)
        with self._lock:
            self._cache[library_id] = loaded
            self._cache.move_to_end(library_id)
            total = sum(c.nbytes for c in self._cache.values())
            while total > self._cache_bytes and len(self._cache) > 1:
                total -= self._cache.popitem(last=False)[1].nbytes
        return loaded if len(loaded.ids) else None

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
            self._cache.clear()
        for db in connections:
            db.close()
        self._local = threading.local()


def _read_matrix(db: sqlite3.Connection, library_id: str, version: int) -> _Loaded:
    """The library's vectors, read in batches into one preallocated matrix (no second copy of them in memory).
    A library with vectors of two sizes (its embedding model changed) keeps the newest chunks' size."""
    count, dims = db.execute(
        "SELECT count(*), (SELECT length(vector) / 4 FROM chunks WHERE library_id = ?1 ORDER BY id DESC LIMIT 1) "
        "FROM chunks WHERE library_id = ?1", (library_id,)).fetchone()
    ids = np.zeros(count, dtype=np.int64)
    matrix = np.zeros((count, dims or 0), dtype=np.float32)
    rows = db.execute("SELECT id, vector FROM chunks WHERE library_id = ? AND length(vector) = ? ORDER BY id",
                      (library_id, 4 * (dims or 0)))
    n = 0
    while batch := rows.fetchmany(4096):
        ids[n:n + len(batch)] = [r[0] for r in batch]
        matrix[n:n + len(batch)] = np.frombuffer(b"".join(r[1] for r in batch), dtype=np.float32).reshape(-1, dims)
        n += len(batch)
    return _Loaded(version, ids[:n], matrix[:n])


def _migrate(db: sqlite3.Connection) -> None:
    """Version 1 (no chunk ids, no keyword index) is copied into version 2's tables."""
    current = db.execute("PRAGMA user_version").fetchone()[0]
    if current >= SCHEMA_VERSION:
        return
    columns = [r[1] for r in db.execute("PRAGMA table_info(chunks)")]
    old = bool(columns) and "id" not in columns
    if old:
        db.execute("ALTER TABLE chunks RENAME TO chunks_v1")
        db.execute("DROP INDEX IF EXISTS chunks_library")
    for statement in _statements(_SCHEMA):
        db.execute(statement)
    if old:
        db.execute("INSERT INTO chunks (library_id, document_id, idx, page, text, vector) "
                   "SELECT library_id, document_id, idx, page, text, vector FROM chunks_v1 ORDER BY document_id, idx")
        db.execute("DROP TABLE chunks_v1")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _statements(script: str) -> Iterator[str]:
    """The schema's statements one by one (``executescript`` would commit the migration's transaction)."""
    buffer = ""
    for line in script.strip().splitlines():
        buffer += line + "\n"
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""


def _bump(db: sqlite3.Connection, library_id: str) -> None:
    db.execute("INSERT INTO versions VALUES (?, 1) ON CONFLICT (library_id) DO UPDATE SET version = version + 1",
               (library_id,))


@contextmanager
def _transaction(db: sqlite3.Connection, *, write: bool) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
