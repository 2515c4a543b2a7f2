"""The default library index: one SQLite file in the data dir holds every chunk (text and vector); searches are
exact, over each library's vectors held in memory as one numpy matrix (reloaded when the library changes, which
any process sharing the data dir may do: a per-library version row says so).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mistral_gateway.storage.library_index import ChunkHit, IndexedChunk
from mistral_gateway.storage.permissions import FILE_MODE, private_dir

__all__ = ["LocalChunkIndex"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    library_id TEXT NOT NULL, document_id TEXT NOT NULL, idx INTEGER NOT NULL, page INTEGER,
    text TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (document_id, idx));
CREATE INDEX IF NOT EXISTS chunks_library ON chunks (library_id);
CREATE TABLE IF NOT EXISTS versions (library_id TEXT PRIMARY KEY, version INTEGER NOT NULL);
"""


@dataclass(slots=True)
class _Loaded:
    version: int
    keys: list[tuple[str, int]]  # (document_id, idx) per matrix row
    matrix: np.ndarray


class LocalChunkIndex:
    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        path.touch(mode=FILE_MODE, exist_ok=True)
        self._path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._cache: dict[str, _Loaded] = {}
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self._path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    def replace(self, library_id: str, document_id: str, chunks: Sequence[IndexedChunk]) -> None:
        db = self._connect()
        with _transaction(db):
            db.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,))
            db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?)",
                           [(library_id, document_id, c.index, c.page, c.text,
                             np.asarray(c.vector, dtype=np.float32).tobytes()) for c in chunks])
            _bump(db, library_id)

    def delete_document(self, library_id: str, document_id: str) -> None:
        db = self._connect()
        with _transaction(db):
            db.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,))
            _bump(db, library_id)

    def delete_library(self, library_id: str) -> None:
        db = self._connect()
        with _transaction(db):
            db.execute("DELETE FROM chunks WHERE library_id = ?", (library_id,))
            db.execute("DELETE FROM versions WHERE library_id = ?", (library_id,))
        with self._lock:
            self._cache.pop(library_id, None)

    def search(self, library_ids: Sequence[str], query: str, vector: np.ndarray, k: int) -> list[ChunkHit]:
        scored: list[tuple[float, str, str, int]] = []
        query_vector = np.asarray(vector, dtype=np.float32)
        for library_id in library_ids:
            loaded = self._loaded(library_id)
            if loaded is None or not loaded.keys:
                continue
            scores = loaded.matrix @ query_vector
            top = np.argpartition(-scores, min(k, len(scores)) - 1)[:k] if len(scores) > k else np.arange(len(scores))
            scored += [(float(scores[i]), library_id, *loaded.keys[i]) for i in top]
        scored.sort(key=lambda s: -s[0])
        return self._hits(scored[:k])

    def _hits(self, scored: list[tuple[float, str, str, int]]) -> list[ChunkHit]:
        db, hits = self._connect(), []
        for score, library_id, document_id, idx in scored:
            row = db.execute("SELECT text, page FROM chunks WHERE document_id = ? AND idx = ?",
                             (document_id, idx)).fetchone()
            if row is not None:
                hits.append(ChunkHit(library_id, document_id, idx, row[0], score, row[1]))
        return hits

    def _loaded(self, library_id: str) -> _Loaded | None:
        db = self._connect()
        row = db.execute("SELECT version FROM versions WHERE library_id = ?", (library_id,)).fetchone()
        if row is None:
            return None
        with self._lock:
            cached = self._cache.get(library_id)
        if cached is not None and cached.version == row[0]:
            return cached
        with _transaction(db):  # the version and the rows read together
            version = db.execute("SELECT version FROM versions WHERE library_id = ?", (library_id,)).fetchone()[0]
            rows = db.execute("SELECT document_id, idx, vector FROM chunks WHERE library_id = ? "
                              "ORDER BY document_id, idx", (library_id,)).fetchall()
        keys = [(r[0], r[1]) for r in rows]
        matrix = (np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows]) if rows
                  else np.zeros((0, 0), dtype=np.float32))
        loaded = _Loaded(version, keys, matrix)
        with self._lock:
            self._cache[library_id] = loaded
        return loaded

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _bump(db: sqlite3.Connection, library_id: str) -> None:
    db.execute("INSERT INTO versions VALUES (?, 1) ON CONFLICT (library_id) DO UPDATE SET version = version + 1",
               (library_id,))


class _transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
