"""Libraries and their documents: CRUD, uploads (kept, then processed by a durable job: ``library_ingest``), and
what is derived from processing (the extracted text, the status).

Every call blocks (database, blobs, the index): the application layer runs them off the event loop.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mistral_gateway.config import Settings
from mistral_gateway.errors import BadRequest, NotFound, PayloadTooLarge
from mistral_gateway.protocol.libraries import (
    DEFAULT_CHUNK_SIZE,
    DocumentListQuery,
    DocumentOut,
    DocumentTextContent,
    DocumentUpdateIn,
    LibraryIn,
    LibraryInUpdate,
    LibraryOut,
    ListDocumentOut,
    ListLibraryOut,
    PaginationInfo,
    ProcessingStatusOut,
)
from mistral_gateway.services.agent_snapshot import now_us, rfc3339
from mistral_gateway.services.files import UploadSink
from mistral_gateway.services.library_text import UnsupportedDocument, detect_type
from mistral_gateway.storage.blobs import BlobNotFound, BlobStore
from mistral_gateway.storage.jobs import JobRepository
from mistral_gateway.storage.libraries import DocumentRecord, LibraryRecord, LibraryRepository
from mistral_gateway.storage.library_index import ChunkIndex

__all__ = ["INGEST_KIND", "LibraryLimits", "LibraryService", "processing_status"]

INGEST_KIND = "library_ingest"
_PENDING = ("todo", "in_progress", "waiting_for_capacity")


@dataclass(frozen=True, slots=True)
class LibraryLimits:
    max_libraries: int
    max_documents: int
    max_document_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> LibraryLimits:
        return cls(settings.max_libraries_per_workspace, settings.max_documents_per_library,
                   settings.library_max_document_bytes)


def processing_status(record: DocumentRecord) -> str:
    """The free-text status the docs show: Running while queued or processing, Completed, or Failed with why."""
    if record.process_status in _PENDING:
        return "Running"
    if record.process_status == "error":
        return f"Failed: {record.status_reason}" if record.status_reason else "Failed"
    return "Completed"


class LibraryService:
    def __init__(self, repo: LibraryRepository, blobs: BlobStore, index: ChunkIndex, jobs: JobRepository,
                 limits: LibraryLimits, *, notify: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.repo = repo
        self.blobs = blobs
        self.index = index
        self.jobs = jobs
        self.limits = limits
        self.notify = notify  # wakes the job runner after a document's job was saved
        self._clock = clock

    # -- libraries --------------------------------------------------------------------------------------------
    def create(self, workspace_id: str, owner_id: str | None, request: LibraryIn) -> LibraryOut:
        if self.repo.count_libraries(workspace_id) >= self.limits.max_libraries:
            raise BadRequest(f"this workspace has {self.limits.max_libraries} libraries, the limit; delete one "
                             "first", code="LIBRARY_LIMIT")
        now = now_us()
        record = LibraryRecord(id=str(uuid.uuid4()), workspace_id=workspace_id, name=request.name,
                               description=request.description, chunk_size=request.chunk_size or DEFAULT_CHUNK_SIZE,
                               owner_id=owner_id, created_at=now, updated_at=now)
        self.repo.add_library(record)
        return library_out(record)

    def list(self, workspace_id: str) -> ListLibraryOut:
        return ListLibraryOut(data=[library_out(r) for r in self.repo.list_libraries(workspace_id)])

    def get(self, workspace_id: str, library_id: str) -> LibraryOut:
        return library_out(self.library(workspace_id, library_id))

    def library(self, workspace_id: str, library_id: str) -> LibraryRecord:
        record = self.repo.get_library(workspace_id, library_id) if _issued(library_id) else None
        if record is None:
            raise NotFound(f"library {library_id!r} not found", code="LIBRARY_NOT_FOUND", param="library_id")
        return record

    def update(self, workspace_id: str, library_id: str, request: LibraryInUpdate) -> LibraryOut:
        self.library(workspace_id, library_id)
        changes = {k: v for k, v in request.model_dump(exclude_unset=True).items() if v is not None}
        if not self.repo.update_library(workspace_id, library_id, changes, now_us()):
            raise NotFound(f"library {library_id!r} not found", code="LIBRARY_NOT_FOUND", param="library_id")
        return self.get(workspace_id, library_id)

    def delete(self, workspace_id: str, library_id: str) -> LibraryOut:
        """The library as it was; its documents, their chunks and blobs go with it."""
        out = self.get(workspace_id, library_id)
        documents = self.repo.delete_library(workspace_id, library_id)
        if documents is None:  # deleted meanwhile by another request
            raise NotFound(f"library {library_id!r} not found", code="LIBRARY_NOT_FOUND", param="library_id")
        self.index.delete_library(library_id)
        for document in documents:
            self._drop_blobs(document)
        return out

    # -- documents --------------------------------------------------------------------------------------------
    def open_upload(self) -> UploadSink:
        return UploadSink(self.blobs.writer(), self.limits.max_document_bytes)

    def upload(self, workspace_id: str, uploader_id: str | None, library_id: str, sink: UploadSink,
               filename: str | None) -> tuple[DocumentOut, bool]:
        """``(the document, True)`` queued for processing; ``(the existing one, False)`` when the library holds
        these bytes already. Refused before anything is kept: an empty file, a type that cannot be read."""
        library = self.library(workspace_id, library_id)
        if sink.size == 0:
            raise BadRequest("the file is empty", code="EMPTY_DOCUMENT", param="file")
        if sink.size > self.limits.max_document_bytes:  # the sink stops earlier; this is its backstop
            raise PayloadTooLarge(f"the document exceeds {self.limits.max_document_bytes} bytes",
                                  code="DOCUMENT_TOO_LARGE")
        try:
            kind = detect_type(bytes(sink.head), filename)
        except UnsupportedDocument as exc:
            raise BadRequest(str(exc), code="UNSUPPORTED_DOCUMENT_TYPE", param="file") from None
        if self.repo.count_documents(library_id) >= self.limits.max_documents:
            raise BadRequest(f"the library holds {self.limits.max_documents} documents, the limit",
                             code="DOCUMENT_LIMIT")
        blob = sink.commit()
        existing = self.repo.find_by_hash(library_id, blob.sha256)
        if existing is not None:
            self.blobs.delete(blob.key)
            return document_out(existing), False
        document_id, now = str(uuid.uuid4()), now_us()
        record = DocumentRecord(id=document_id, library_id=library.id, workspace_id=workspace_id,
                                name=_name(filename, kind.extension), mime_type=kind.mime_type,
                                extension=kind.extension, size=blob.size, sha256=blob.sha256, blob_key=blob.key,
                                process_status="todo", created_at=now, uploaded_by_id=uploader_id)
        try:
            saved, created = self.repo.add_document(record, self._job(workspace_id, document_id))
        except Exception:
            self.blobs.delete(blob.key)
            raise
        if not created:
            self.blobs.delete(blob.key)  # an identical upload won the race
        else:
            self.repo.touch_library(library.id, now)
            self.notify()
        return document_out(saved), created

    def list_documents(self, workspace_id: str, library_id: str, query: DocumentListQuery) -> ListDocumentOut:
        self.library(workspace_id, library_id)
        rows, total = self.repo.list_documents(library_id, search=query.search, sort_by=query.sort_by,
                                               descending=query.sort_order == "desc",
                                               offset=query.page * query.page_size, limit=query.page_size)
        pages = math.ceil(total / query.page_size)
        return ListDocumentOut(
            pagination=PaginationInfo(total_items=total, total_pages=pages, current_page=query.page,
                                      page_size=query.page_size, has_more=query.page + 1 < pages),
            data=[document_out(r) for r in rows])

    def document(self, workspace_id: str, library_id: str, document_id: str) -> DocumentRecord:
        self.library(workspace_id, library_id)
        record = self.repo.get_document(workspace_id, library_id, document_id) if _issued(document_id) else None
        if record is None:
            raise NotFound(f"document {document_id!r} not found in library {library_id!r}",
                           code="DOCUMENT_NOT_FOUND", param="document_id")
        return record

    def get_document(self, workspace_id: str, library_id: str, document_id: str) -> DocumentOut:
        return document_out(self.document(workspace_id, library_id, document_id))

    def delete_document(self, workspace_id: str, library_id: str, document_id: str) -> None:
        """The row first: a job still processing it sees it gone and stops without indexing."""
        self.document(workspace_id, library_id, document_id)
        record = self.repo.delete_document(workspace_id, library_id, document_id)
        if record is None:
            raise NotFound(f"document {document_id!r} not found in library {library_id!r}",
                           code="DOCUMENT_NOT_FOUND", param="document_id")
        self.index.delete_document(library_id, document_id)
        self._drop_blobs(record)
        self.repo.touch_library(library_id, now_us())

    def update_document(self, workspace_id: str, library_id: str, document_id: str,
                        request: DocumentUpdateIn) -> DocumentOut:
        """Renames the document and/or replaces its attributes; its content and processing are untouched."""
        self.document(workspace_id, library_id, document_id)
        changes = {k: v for k, v in request.model_dump(exclude_unset=True).items() if v is not None}
        if changes and not self.repo.update_document(workspace_id, library_id, document_id, changes):
            raise NotFound(f"document {document_id!r} not found in library {library_id!r}",
                           code="DOCUMENT_NOT_FOUND", param="document_id")
        return self.get_document(workspace_id, library_id, document_id)

    def status(self, workspace_id: str, library_id: str, document_id: str) -> ProcessingStatusOut:
        record = self.document(workspace_id, library_id, document_id)
        return ProcessingStatusOut(document_id=record.id, process_status=record.process_status,
                                   processing_status=processing_status(record))

    def text_content(self, workspace_id: str, library_id: str, document_id: str) -> DocumentTextContent:
        record = self.document(workspace_id, library_id, document_id)
        if record.text_key is None:
            raise BadRequest("the document has no extracted text yet (processing_status: "
                             f"{processing_status(record)})", code="DOCUMENT_NOT_PROCESSED")
        try:
            text = b"".join(self.blobs.read(record.text_key)).decode("utf-8")
        except BlobNotFound:
            raise NotFound("the document's extracted text is gone", code="DOCUMENT_NOT_FOUND") from None
        return DocumentTextContent(text=text)

    def reprocess(self, workspace_id: str, library_id: str, document_id: str) -> None:
        record = self.document(workspace_id, library_id, document_id)
        if record.process_status in _PENDING:
            return  # a job is on it already
        if self.repo.requeue(record.id, self._job(workspace_id, record.id), "todo"):
            self.notify()

    def _job(self, workspace_id: str, document_id: str) -> Any:
        return self.jobs.new_row(workspace_id, INGEST_KIND, {"document_id": document_id}, now=self._clock())

    def _drop_blobs(self, record: DocumentRecord) -> None:
        for key in (record.blob_key, record.text_key):
            if key:
                self.blobs.delete(key)


def _issued(object_id: str) -> bool:
    """Whether the id has the form this service issues (a lowercase UUID); any other names nothing, and is not
    sent to the database (PostgreSQL refuses a NUL character in a query rather than finding no row)."""
    try:
        return str(uuid.UUID(object_id)) == object_id
    except ValueError:
        return False


def _name(filename: str | None, extension: str | None) -> str:
    name = (filename or "").replace("\x00", "").replace("\\", "/").rsplit("/", 1)[-1].strip()[:255]
    return name or (f"document.{extension}" if extension else "document")


def _as_uuid(workspace_id: str) -> str | None:
    """The owning workspace's id in the UUID form the spec declares (workspace ids are 32 hex digits)."""
    try:
        return str(uuid.UUID(hex=workspace_id))
    except ValueError:
        return None


def library_out(record: LibraryRecord) -> LibraryOut:
    return LibraryOut(id=record.id, name=record.name, created_at=rfc3339(record.created_at),
                      updated_at=rfc3339(record.updated_at), owner_id=_as_uuid(record.workspace_id),
                      owner_type="Workspace",
                      total_size=record.total_size, nb_documents=record.nb_documents, chunk_size=record.chunk_size,
                      description=record.description)


def document_out(record: DocumentRecord) -> DocumentOut:
    return DocumentOut(id=record.id, library_id=record.library_id, hash=record.sha256[:32],
                       mime_type=record.mime_type, extension=record.extension, size=record.size, name=record.name,
                       created_at=rfc3339(record.created_at),
                       last_processed_at=rfc3339(record.last_processed_at) if record.last_processed_at else None,
                       number_of_pages=record.number_of_pages, process_status=record.process_status,  # type: ignore[arg-type]
                       uploaded_by_id=_as_uuid(record.workspace_id), uploaded_by_type="Workspace",
                       tokens_processing_main_content=record.tokens, tokens_processing_summary=0,
                       attributes=record.attributes, processing_status=processing_status(record),
                       tokens_processing_total=record.tokens)
