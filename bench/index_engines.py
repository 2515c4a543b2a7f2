"""Measures candidate engines for the local library index, each in fresh processes, on the same synthetic vectors:
insert time, search latency p50/p99, recall@10 against exact numpy search, the memory a loaded index adds to a
process, and cold load time (a restarted server: open the data dir and answer one query).

    .venv/bin/python bench/index_engines.py --chunks 10000 100000 --engines local sqlite-vec usearch

``local`` is the project's ``LocalChunkIndex`` (SQLite + numpy, exact); ``sqlite-vec`` (vec0 table, exact) needs
``apsw`` because this Python's ``sqlite3`` cannot load extensions; ``usearch`` is an HNSW index. The last two are
not dependencies of the project: install them with ``pip install --target DIR`` and put DIR on PYTHONPATH. This is
how README's choice of the local engine was measured; ``bench/suites/library_search.py`` keeps measuring the
chosen one against exact search.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIMS = 384
QUERIES = 200
K = 10
DOC_CHUNKS = 50  # chunks per document: how the index is written (one replace per document)
LIBRARY = "lib"


def vectors(n: int, seed: int = 7) -> np.ndarray:
    """Clustered unit vectors (like sentence embeddings: topics, not uniform noise), float32."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(16, n // 100), DIMS)).astype(np.float32)
    data = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, DIMS)).astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


def queries(data: np.ndarray, seed: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = data[rng.integers(0, len(data), QUERIES)] + 0.5 * rng.standard_normal((QUERIES, DIMS)).astype(np.float32)
    return (picked / np.linalg.norm(picked, axis=1, keepdims=True)).astype(np.float32)


def exact_top(data: np.ndarray, query: np.ndarray) -> list[int]:
    scores = data @ query
    top = np.argpartition(-scores, K)[:K]
    return [int(i) for i in top[np.argsort(-scores[top])]]


def _rss_mb() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


class _Local:
    def __init__(self, folder: Path) -> None:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
        from mistral_gateway.storage.library_index_local import LocalChunkIndex
        self.index = LocalChunkIndex(folder / "index.sqlite", hybrid=False)

    def insert(self, data: np.ndarray) -> None:
        from mistral_gateway.storage.library_index import IndexedChunk
        for start in range(0, len(data), DOC_CHUNKS):
            self.index.replace(LIBRARY, f"d{start:08d}", [IndexedChunk(i, f"chunk {start + i}", data[start + i])
                                                          for i in range(min(DOC_CHUNKS, len(data) - start))])

    def search(self, query: np.ndarray) -> list[int]:
        return [int(h.document_id[1:]) + h.index for h in self.index.search([LIBRARY], "", query, K)]


class _SqliteVec:
    def __init__(self, folder: Path) -> None:
        import apsw
        import sqlite_vec
        self.db = apsw.Connection(str(folder / "vec.sqlite"))
        self.db.enable_load_extension(True)
        self.db.load_extension(sqlite_vec.loadable_path())
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS v USING vec0(library_id text partition key, "
                        f"embedding float[{DIMS}] distance_metric=cosine)")

    def insert(self, data: np.ndarray) -> None:
        for start in range(0, len(data), DOC_CHUNKS):
            with self.db:
                self.db.executemany("INSERT INTO v(rowid, library_id, embedding) VALUES (?, ?, ?)",
                                    [(start + i + 1, LIBRARY, data[start + i].tobytes())
                                     for i in range(min(DOC_CHUNKS, len(data) - start))])

    def search(self, query: np.ndarray) -> list[int]:
        rows = self.db.execute("SELECT rowid FROM v WHERE embedding MATCH ? AND k = ? AND library_id = ? "
                               "ORDER BY distance", (query.tobytes(), K, LIBRARY)).fetchall()
        return [r[0] - 1 for r in rows]


class _Usearch:
    def __init__(self, folder: Path) -> None:
        from usearch.index import Index
        self.path = folder / "usearch.index"
        # expansion_search 256 (default 64, recall@10 0.80 on these vectors at 10k): recall first, then speed
        self.index = Index(ndim=DIMS, metric="cos", dtype="f32", expansion_search=256)
        if self.path.exists():
            self.index.load(str(self.path))

    def insert(self, data: np.ndarray) -> None:
        for start in range(0, len(data), DOC_CHUNKS):
            end = min(len(data), start + DOC_CHUNKS)
            self.index.add(np.arange(start, end), data[start:end])
        self.index.save(str(self.path))  # once: saving the whole file per document would be quadratic

    def search(self, query: np.ndarray) -> list[int]:
        return [int(key) for key in self.index.search(query, K).keys]


ENGINES = {"local": _Local, "sqlite-vec": _SqliteVec, "usearch": _Usearch}


def _child(engine: str, n: int, folder: Path, phase: str) -> dict[str, float]:
    data = vectors(n)
    qs = queries(data)
    rss0 = _rss_mb()
    started = time.perf_counter()
    index = ENGINES[engine](folder)
    if phase == "build":
        index.insert(data)
        return {"insert_s": time.perf_counter() - started}
    index.search(qs[0])
    cold_s = time.perf_counter() - started
    rss = _rss_mb() - rss0
    times, hits = [], 0
    for q in qs:
        t0 = time.perf_counter()
        got = index.search(q)
        times.append(1e3 * (time.perf_counter() - t0))
        hits += len(set(got) & set(exact_top(data, q)))
    times.sort()
    return {"cold_load_s": cold_s, "rss_mb": rss, "p50_ms": statistics.median(times),
            "p99_ms": times[int(0.99 * (len(times) - 1))], "recall_at_10": hits / (K * len(qs))}


def _run(engine: str, n: int, folder: Path, phase: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", engine, str(n), str(folder), phase],
                         check=True, capture_output=True, text=True, timeout=3600)
    return json.loads(out.stdout)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        engine, n, folder, phase = sys.argv[2:6]
        print(json.dumps(_child(engine, int(n), Path(folder), phase)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--engines", nargs="+", choices=sorted(ENGINES), default=sorted(ENGINES))
    args = parser.parse_args()
    results = []
    for n in args.chunks:
        for engine in args.engines:
            with tempfile.TemporaryDirectory(prefix="index-engines-") as tmp:
                row = {"engine": engine, "chunks": n, **_run(engine, n, Path(tmp), "build"),
                       **_run(engine, n, Path(tmp), "search")}
            results.append(row)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
