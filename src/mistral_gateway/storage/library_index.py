"""The library index: every processed document's chunks (text and embedding), searched by meaning and keywords.

One small interface, two engines behind it (``library_index`` setting): ``local`` keeps the index in the data dir
(``storage/library_index_local.py``), ``pgvector`` in PostgreSQL with the pgvector extension
(``storage/library_index_pg.py``) for deployments that outgrow one machine. The libraries service owns which
library belongs to which workspace; the index only ever sees library ids the service already checked.

Vectors are float32 and L2-normalised (the embedding engines' output), so cosine similarity is a dot product.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mistral_gateway.config import Settings

__all__ = ["ChunkHit", "ChunkIndex", "IndexedChunk", "open_library_index"]


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
        """The ``k`` best chunks of these libraries for the query (its text for keyword scoring, its embedding
        for vector scoring), best first."""
        ...

    def close(self) -> None: ...


def open_library_index(settings: Settings) -> ChunkIndex:
    """The index the ``library_index`` setting names."""
    if settings.library_index == "pgvector":
        from mistral_gateway.storage.library_index_pg import PgVectorChunkIndex
        return PgVectorChunkIndex(settings.library_index_url or settings.sqlalchemy_url)
    from mistral_gateway.storage.library_index_local import LocalChunkIndex
    return LocalChunkIndex(settings.data_dir / "libraries" / "index.sqlite")
