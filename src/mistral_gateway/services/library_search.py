"""Retrieval from libraries: the query embedded with the libraries' embedding model, the index searched, each hit
named by its document. What the ``document_library`` tool runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from anyio.to_thread import run_sync

from mistral_gateway.services.library_ingest import Embedder
from mistral_gateway.storage.libraries import LibraryRepository
from mistral_gateway.storage.library_index import ChunkHit, ChunkIndex, unit_vectors

__all__ = ["LibrarySearch", "Retrieved"]

MAX_QUERY_CHARS = 2000  # the embedding model reads ~256 tokens; keyword search gets the same text


@dataclass(frozen=True, slots=True)
class Retrieved:
    hit: ChunkHit
    document_name: str


@dataclass(slots=True)
class LibrarySearch:
    repo: LibraryRepository
    index: ChunkIndex
    embed: Embedder
    top_k: int

    async def search(self, workspace_id: str, library_ids: Sequence[str], query: str,
                     k: int | None = None) -> list[Retrieved]:
        """The best chunks of the workspace's libraries among ``library_ids`` (others, and deleted ones, are
        skipped), best first."""
        query = query.strip()[:MAX_QUERY_CHARS]
        if not query:
            return []
        libraries = await run_sync(self.repo.libraries, workspace_id, list(dict.fromkeys(library_ids)))
        if not libraries:
            return []
        vector = unit_vectors((await self.embed([query])).vectors)[0]
        hits = await run_sync(self.index.search, [lib.id for lib in libraries], query, vector, k or self.top_k)
        documents = await run_sync(self.repo.documents, list({h.document_id for h in hits}))
        return [Retrieved(h, documents[h.document_id].name) for h in hits if h.document_id in documents]
