"""The measurements of the ``library_search`` suite, each run as its own process; prints one JSON object.

    python bench/library_search_direct.py latency --chunks 100000 [--queries 200]
    python bench/library_search_direct.py pgvector --chunks 100000 [--queries 200]
    python bench/library_search_direct.py questions --data-dir DIR [--chunk-size 1000]

``latency``: the local index (``LocalChunkIndex``, vector-only and hybrid) side by side with exact numpy search over
the same matrix (the baseline, on one BLAS thread), the three interleaved query by query so that drift in the
machine's load hits them alike; recall@10 of the index's vector ranking against the exact one; insert and cold load
(reopen + first query). ``pgvector``: the same for ``PgVectorChunkIndex`` in a throwaway PostgreSQL 16 + pgvector.
``questions``: the project's question set (``bench/library_questions``): its documents chunked by the real chunker,
embedded by the real embedding model (``mistral-embed``), indexed; hit@5 (the answering document among the top 5
chunks' documents) with and without keyword scoring.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Before numpy loads OpenBLAS: the baseline's matrix-vector product on one thread, like the index's einsum. With two,
# OpenBLAS's threads keep spinning after each product and steal the core the next measured search runs on (index p99
# 25 ms instead of 10 ms at 100k chunks, measured).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from index_engines import K, exact_top, queries, vectors  # noqa: E402 - a sibling script

QUESTIONS_DIR = BENCH_DIR / "library_questions"
DOC_CHUNKS = 50
SYLLABLES = ("ka", "lo", "mi", "ren", "ta", "vo", "sel", "dor", "pa", "ni", "gru", "fe", "sho", "bal", "tu", "wex")
TEXT_WORDS, QUERY_WORDS = 40, 6


def _vocabulary(rng: np.random.Generator, size: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """Made-up words with Zipf-like frequencies (the k-th most common 1/k as often as the first), like text."""
    words = np.array(sorted({"".join(rng.choice(SYLLABLES, 3)) for _ in range(3 * size)})[:size])
    weights = 1.0 / np.arange(1, len(words) + 1)
    return words, weights / weights.sum()


def _texts(rng: np.random.Generator, count: int, length: int) -> list[str]:
    words, p = _vocabulary(np.random.default_rng(0))
    return [" ".join(rng.choice(words, length, p=p)) for _ in range(count)]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def _interleaved(data: np.ndarray, qs: np.ndarray, q_texts: list[str], vector_only: Any, hybrid: Any,
                 prefix: str) -> dict[str, Any]:
    """Exact numpy search, then ``vector_only``, then ``hybrid``, query by query; p50/p99 of each and recall@10 of
    ``vector_only`` against exact."""
    names = ("exact", prefix, f"{prefix}_hybrid")
    times: dict[str, list[float]] = {name: [] for name in names}
    found = 0
    for q, text in zip(qs, q_texts, strict=True):
        clocks = [time.perf_counter()]
        truth = exact_top(data, q)
        clocks.append(time.perf_counter())
        got = vector_only.search(["lib"], "", q, K)
        clocks.append(time.perf_counter())
        hybrid.search(["lib"], text, q, K)
        clocks.append(time.perf_counter())
        for name, before, after in zip(names, clocks, clocks[1:], strict=False):
            times[name].append(1e3 * (after - before))
        found += len({int(h.document_id[1:]) + h.index for h in got} & set(truth))
    return {"queries": len(qs), "recall_at_10": found / (K * len(qs)),
            **{f"{name}_{stat}": fn(t) for name, t in times.items()
               for stat, fn in (("p50_ms", statistics.median), ("p99_ms", lambda v: _percentile(v, 0.99)))}}


def latency(n: int, n_queries: int) -> dict[str, Any]:
    from mistral_gateway.storage.library_index import IndexedChunk
    from mistral_gateway.storage.library_index_local import LocalChunkIndex

    data, rng = vectors(n), np.random.default_rng(3)
    texts = _texts(rng, n, TEXT_WORDS)
    qs = queries(data)[:n_queries]
    q_texts = _texts(rng, len(qs), QUERY_WORDS)
    with tempfile.TemporaryDirectory(prefix="library-latency-") as tmp:
        path = Path(tmp) / "index.sqlite"
        started = time.perf_counter()
        writer = LocalChunkIndex(path)
        for s in range(0, n, DOC_CHUNKS):
            writer.replace("lib", f"d{s:08d}", [IndexedChunk(i, texts[s + i], data[s + i])
                                                for i in range(min(DOC_CHUNKS, n - s))])
        insert_s = time.perf_counter() - started
        writer.close()
        started = time.perf_counter()
        vector_only = LocalChunkIndex(path, hybrid=False)
        vector_only.search(["lib"], "", qs[0], K)
        cold_s = time.perf_counter() - started
        hybrid = LocalChunkIndex(path)
        hybrid.search(["lib"], q_texts[0], qs[0], K)
        measured = _interleaved(data, qs, q_texts, vector_only, hybrid, "local")
        vector_only.close()
        hybrid.close()
    return {"chunks": n, "insert_s": insert_s, "cold_load_s": cold_s, "matrix_mb": data.nbytes / 2**20, **measured}


def pgvector(n: int, n_queries: int) -> dict[str, Any]:
    """``PgVectorChunkIndex`` (exact, vector-only and hybrid) in a throwaway PostgreSQL 16 + pgvector cluster
    (pgserver's binaries, as in the tests), beside exact numpy search; the rows are bulk-loaded with COPY."""
    import psycopg

    sys.path.insert(0, str(BENCH_DIR.parent / "tests"))
    from mistral_gateway.storage.library_index_pg import PgVectorChunkIndex, conninfo
    from pgvector_cluster import pgserver_bindir, pgvector_cluster

    bindir = pgserver_bindir()
    if bindir is None:
        return {"skipped": "pgserver is not installed"}
    data, rng = vectors(n), np.random.default_rng(3)
    qs = queries(data)[:n_queries]
    q_texts, texts = _texts(rng, len(qs), QUERY_WORDS), _texts(rng, n, TEXT_WORDS)
    with pgvector_cluster(bindir) as url:
        vector_only = PgVectorChunkIndex(url, hybrid=False)
        started = time.perf_counter()
        with psycopg.connect(conninfo(url)) as db, db.cursor() as cursor:
            with cursor.copy("COPY library_chunks (id, library_id, document_id, idx, text) FROM STDIN") as copy:
                for i in range(n):
                    copy.write_row((i + 1, "lib", f"d{i - i % DOC_CHUNKS:08d}", i % DOC_CHUNKS, texts[i]))
            with cursor.copy("COPY library_vectors (id, library_id, embedding) FROM STDIN") as copy:
                for i in range(n):
                    copy.write_row((i + 1, "lib", "[" + ",".join(map(repr, data[i].tolist())) + "]"))
            cursor.execute("SELECT setval('library_chunks_id_seq', %s)", (n,))
        with psycopg.connect(conninfo(url), autocommit=True) as db:
            db.execute("VACUUM ANALYZE library_chunks, library_vectors")
        insert_s = time.perf_counter() - started
        hybrid = PgVectorChunkIndex(url)
        measured = _interleaved(data, qs, q_texts, vector_only, hybrid, "pg")
        vector_only.close()
        hybrid.close()
    return {"chunks": n, "insert_s": insert_s, **measured}


def questions(data_dir: Path, chunk_size: int) -> dict[str, Any]:
    import direct_args

    from mistral_gateway.services.library_ingest import _normalised
    from mistral_gateway.services.library_text import ExtractedText, split_chunks
    from mistral_gateway.storage.library_index import IndexedChunk
    from mistral_gateway.storage.library_index_local import LocalChunkIndex

    manager, entry = direct_args.resolve(argparse.Namespace(data_dir=data_dir, model="mistral-embed"))
    engine: Any = asyncio.run(manager.embedding(entry))

    def embed(texts: list[str]) -> np.ndarray:
        return _normalised(asyncio.run(engine.embed(texts)).vectors)

    cases = json.loads((QUESTIONS_DIR / "questions.json").read_text())
    hits: dict[str, list[bool]] = {"hybrid": [], "vector": []}
    firsts: dict[str, list[bool]] = {"hybrid": [], "vector": []}
    with tempfile.TemporaryDirectory(prefix="library-questions-") as tmp:
        path, chunks = Path(tmp) / "index.sqlite", 0
        writer = LocalChunkIndex(path)
        for doc in sorted((QUESTIONS_DIR / "documents").iterdir()):
            pieces = split_chunks(ExtractedText(doc.read_text()), chunk_size)
            vecs = embed([p.text for p in pieces])
            writer.replace("lib", doc.name, [IndexedChunk(p.index, p.text, vecs[i], p.page)
                                             for i, p in enumerate(pieces)])
            chunks += len(pieces)
        question_vectors = embed([c["question"] for c in cases])
        for name, index in (("hybrid", LocalChunkIndex(path)), ("vector", LocalChunkIndex(path, hybrid=False))):
            for case, vector in zip(cases, question_vectors, strict=True):
                found = index.search(["lib"], case["question"], vector, 5)
                hits[name].append(case["document"] in {h.document_id for h in found})
                firsts[name].append(bool(found) and found[0].document_id == case["document"])
            index.close()
        writer.close()
    manager.close()
    misses = {name: [c["question"] for c, ok in zip(cases, got, strict=True) if not ok] for name, got in hits.items()}
    return {"questions": len(cases), "chunks": chunks, "chunk_size": chunk_size,
            **{f"hit_at_5_{name}": sum(got) / len(got) for name, got in hits.items()},
            **{f"hit_at_1_{name}": sum(got) / len(got) for name, got in firsts.items()}, "misses": misses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--chunks", type=int, required=True)
    lat.add_argument("--queries", type=int, default=200)
    pg = sub.add_parser("pgvector")
    pg.add_argument("--chunks", type=int, required=True)
    pg.add_argument("--queries", type=int, default=200)
    qs = sub.add_parser("questions")
    qs.add_argument("--data-dir", type=Path, required=True)
    qs.add_argument("--chunk-size", type=int, default=1000)
    args = parser.parse_args()
    if args.mode == "latency":
        print(json.dumps(latency(args.chunks, args.queries)))
    elif args.mode == "pgvector":
        print(json.dumps(pgvector(args.chunks, args.queries)))
    else:
        print(json.dumps(questions(args.data_dir, args.chunk_size)))


if __name__ == "__main__":
    main()
