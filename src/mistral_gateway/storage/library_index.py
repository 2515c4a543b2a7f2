"""The library index: every processed document's chunks (text and embedding), searched by meaning and keywords.

One small interface, two engines behind it (``library_index`` setting): ``local`` keeps the index in the data dir
(``storage/library_index_local.py``), ``pgvector`` in PostgreSQL with the pgvector extension
(``storage/library_index_pg.py``) for deployments that outgrow one machine. The libraries service owns which
library belongs to which workspace; the index only ever sees library ids the service already checked.

Vectors are float32 and L2-normalised (the embedding engines' output), so cosine similarity is a dot product.
With ``library_hybrid`` (the default) each engine also ranks the chunks by keywords (BM25: SQLite FTS5, PostgreSQL
full-text search) and fuses the two rankings by reciprocal rank: on the project's question set
(``bench/library_questions``) that finds the answering document in the top 5 more often than meaning alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mistral_gateway.config import Settings

__all__ = ["MAX_K", "MAX_KEYWORD_POSTINGS", "ChunkHit", "ChunkIndex", "IndexedChunk", "affordable_terms",
           "fuse_rankings", "keyword_terms", "open_library_index", "unit_vectors"]

MAX_K = 100  # a search returns at most this many chunks (k above it is capped, k below 1 finds nothing)
MAX_TERMS = 32  # keywords of a query used for keyword scoring
# Ranking keyword matches costs microseconds per matching chunk: a query keeps its rarest terms while their chunk
# counts add up to at most this (common terms weigh little in BM25 anyway; names and codes are rare), so a query of
# common words is ranked by meaning alone instead of scanning most of the index.
MAX_KEYWORD_POSTINGS = 2_000
RRF_K = 60  # reciprocal rank fusion's constant: a chunk scores 1 / (RRF_K + rank) in each ranking it is in
_WORD = re.compile(r"\w+", re.UNICODE)
# words too common to say anything about a chunk; BM25 would weigh them low anyway, but each costs a posting scan
_STOP = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "did", "do", "does", "for", "from", "had", "has", "have",
    "how", "i", "in", "is", "it", "its", "of", "on", "or", "that", "the", "their", "there", "this", "to", "was",
    "were", "what", "when", "where", "which", "who", "whom", "why", "will", "with", "you", "your"))


@dataclass(frozen=True, slots=True)
class IndexedChunk:
    index: int  # its position in the document, from 0
    text: str
    vector: np.ndarray  # float32, shape (dimensions,), L2-normalised
    page: int | None = None  # the 0-based page it starts on, when the document has pages


@dataclass(frozen=True, slots=True)
class ChunkHit:
    library_id: str
    document_id: str
    index: int
    text: str
    score: float  # higher is better; comparable within one search only
    page: int | None = None


class ChunkIndex(Protocol):
    """Thread-safe; every call blocks (run it off the event loop). Writes are durable when they return."""

    def replace(self, library_id: str, document_id: str, chunks: Sequence[IndexedChunk]) -> None:
        """The document's chunks become exactly ``chunks`` (a reprocessed document's old ones go)."""
        ...

    def delete_document(self, library_id: str, document_id: str) -> None: ...

    def delete_library(self, library_id: str) -> None: ...

    def search(self, library_ids: Sequence[str], query: str, vector: np.ndarray, k: int) -> list[ChunkHit]:
        """The ``k`` best chunks (at most ``MAX_K``; none for k < 1) of these libraries for the query (its text for
        keyword scoring, its embedding for vector scoring), best first. Unknown or empty libraries add nothing."""
        ...

    def close(self) -> None: ...


def keyword_terms(query: str) -> list[str]:
    """The query's words for keyword scoring: lower-cased, common words dropped, each once, at most MAX_TERMS."""
    words = (w.lower() for w in _WORD.findall(query))
    return list(dict.fromkeys(w for w in words if w not in _STOP))[:MAX_TERMS]


def affordable_terms(counts: Iterable[tuple[str, int]], budget: int = MAX_KEYWORD_POSTINGS) -> list[str]:
    """The rarest terms (by how many chunks hold each, counted up to ``budget + 1``) whose counts add up to at most
    ``budget``; terms no chunk holds are dropped."""
    kept, total = [], 0
    for term, count in sorted((c for c in counts if c[1] > 0), key=lambda c: c[1]):
        if total + count > budget:
            break
        kept.append(term)
        total += count
    return kept


def fuse_rankings(rankings: Iterable[Sequence[int]], k: int) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of rankings of chunk ids (best first): the ``k`` best ids with their fused scores.
    Ranks, not raw scores, are fused: cosine similarities and BM25 scores are on unrelated scales."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank + 1)
    return sorted(fused.items(), key=lambda item: -item[1])[:k]


def open_library_index(settings: Settings) -> ChunkIndex:
    """The index the ``library_index`` setting names."""
    if settings.library_index == "pgvector":
        from mistral_gateway.storage.library_index_pg import PgVectorChunkIndex
        return PgVectorChunkIndex(settings.library_index_url or settings.sqlalchemy_url,
                                  hybrid=settings.library_hybrid)
    from mistral_gateway.storage.library_index_local import LocalChunkIndex
    return LocalChunkIndex(settings.data_dir / "libraries" / "index.sqlite", hybrid=settings.library_hybrid)


def unit_vectors(vectors: Sequence[Sequence[float]]) -> np.ndarray:
    """Embeddings as the index keeps and searches them: float32 rows scaled to length 1 (a zero row stays zero)."""
    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)
