"""Processing one library document, as a durable job (kind ``library_ingest``): extract its text, chunk it, embed
the chunks with the local embedding model, index them. The document shows each step in ``process_status``; a
document that cannot be read ends ``error`` with the reason, never silently.

A document deleted while it is processed is noticed before and after indexing: nothing of it stays in the index.
A crash mid-way is retried from the start by the job runner (each step replaces what an earlier attempt left).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mistral_gateway.engines.base import Embeddings, OcrEngine
from mistral_gateway.errors import GatewayError
from mistral_gateway.jobs.context import JobContext
from mistral_gateway.services.agent_snapshot import now_us
from mistral_gateway.services.library_text import (
    DocumentType,
    UnsupportedDocument,
    extract_text,
    split_chunks,
)
from mistral_gateway.storage.blobs import BlobNotFound, BlobStore
from mistral_gateway.storage.libraries import DocumentRecord, LibraryRepository
from mistral_gateway.storage.library_index import ChunkIndex, IndexedChunk, unit_vectors

__all__ = ["EMBED_BATCH", "Embedder", "LibraryIngest"]

log = logging.getLogger("mistral_gateway.libraries")
EMBED_BATCH = 32  # chunks per embedding call: the engine's batch, and how often a cancel or a delete is seen

Embedder = Callable[[list[str]], Awaitable[Embeddings]]
OcrLoader = Callable[[], Awaitable[OcrEngine]]
# (the document, its embedding tokens, when its processing started): the usage log's row for the uploader's token
UsageHook = Callable[[DocumentRecord, int, float], None]


@dataclass(slots=True)
class LibraryIngest:
    repo: LibraryRepository
    blobs: BlobStore
    index: ChunkIndex
    embed: Embedder
    ocr: OcrLoader
    max_pages: int
    record_usage: UsageHook | None = None

    async def handler(self, job: JobContext) -> None:
        document_id = str(job.payload["document_id"])
        try:
            await self._process(job, document_id)
        except UnsupportedDocument as exc:
            await self._failed(job, document_id, str(exc))
        except Exception as exc:
            if job.attempt >= job.record.max_attempts:  # the last try: the document says why it failed
                await self._failed(job, document_id, exc.message if isinstance(exc, GatewayError)
                                   else f"processing failed ({type(exc).__name__})")
            raise

    async def _failed(self, job: JobContext, document_id: str, reason: str) -> None:
        await job.run_blocking(lambda: self.repo.set_status(document_id, "error", status_reason=reason[:2000],
                                                            last_processed_at=now_us()))

    async def _process(self, job: JobContext, document_id: str) -> None:
        record = await job.run_blocking(self.repo.document, document_id)
        if record is None:
            return  # deleted before its turn came
        started = time.time()
        library = await job.run_blocking(self.repo.get_library, record.workspace_id, record.library_id)
        if library is None or not await job.run_blocking(lambda: self.repo.set_status(document_id, "in_progress")):
            return
        try:
            data = await job.run_blocking(lambda: b"".join(self.blobs.read(record.blob_key)))
        except BlobNotFound:
            raise UnsupportedDocument("the uploaded file is gone from storage; upload it again") from None
        extracted = await extract_text(data, DocumentType(record.mime_type or "", record.extension),
                                       ocr=self.ocr, max_pages=self.max_pages)
        del data
        pieces = await job.run_blocking(split_chunks, extracted, library.chunk_size)  # seconds for a long text
        if not pieces:
            raise UnsupportedDocument("no text could be extracted from the document")
        chunks: list[IndexedChunk] = []
        tokens = 0
        for start in range(0, len(pieces), EMBED_BATCH):
            batch = pieces[start:start + EMBED_BATCH]
            result = await self.embed([p.text for p in batch])
            tokens += sum(result.token_counts)
            vectors = unit_vectors(result.vectors)
            chunks += [IndexedChunk(p.index, p.text, vectors[i], p.page) for i, p in enumerate(batch)]
            if await job.run_blocking(self.repo.document, document_id) is None:
                return  # deleted meanwhile: stop before indexing anything
        text_key = await job.run_blocking(self._write_text, extracted.text)
        await job.run_blocking(self.index.replace, record.library_id, document_id, chunks)
        done = await job.run_blocking(lambda: self.repo.set_status(
            document_id, "done", text_key=text_key, number_of_pages=extracted.number_of_pages, tokens=tokens,
            chunks=len(chunks), last_processed_at=now_us(), status_reason=None))
        if not done:  # deleted while it was indexed: take it back out
            await job.run_blocking(self.index.delete_document, record.library_id, document_id)
            await job.run_blocking(self.blobs.delete, text_key)
            return
        if record.text_key and record.text_key != text_key:  # a reprocessed document's earlier text
            await job.run_blocking(self.blobs.delete, record.text_key)
        if self.record_usage is not None:
            await job.run_blocking(self.record_usage, record, tokens, started)

    def _write_text(self, text: str) -> str:
        writer = self.blobs.writer()
        try:
            writer.write(text.encode("utf-8"))
            return writer.commit().key
        except BaseException:
            writer.abort()
            raise

