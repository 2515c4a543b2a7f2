"""The library operations: the libraries service's calls, off the event loop (database, blobs, the index)."""

from __future__ import annotations

from dataclasses import dataclass

import anyio
from anyio.to_thread import run_sync

from mistral_gateway.app.context import Context, Work
from mistral_gateway.app.results import NoContent, RawJSON
from mistral_gateway.protocol.libraries import (
    DocumentOut,
    DocumentTextContent,
    DocumentUpdateIn,
    LibraryIn,
    LibraryInUpdate,
    LibraryOut,
    ListDocumentOut,
    ListLibraryOut,
    ProcessingStatusOut,
)
from mistral_gateway.services.files import UploadSink
from mistral_gateway.services.libraries import LibraryService

__all__ = ["LIBRARIES", "DocumentUpload", "libraries_of"]


@dataclass(frozen=True, slots=True)
class DocumentUpload:
    """A received document: its bytes in ``sink`` (not yet durable)."""

    sink: UploadSink
    filename: str | None


def libraries_of(ctx: Context) -> LibraryService:
    assert ctx.services.libraries is not None, "build_services wires the libraries service"
    return ctx.services.libraries


async def list_libraries(ctx: Context, _: None) -> ListLibraryOut:
    return await run_sync(libraries_of(ctx).list, ctx.workspace_id)


async def create_library(ctx: Context, request: LibraryIn) -> LibraryOut:
    return await run_sync(libraries_of(ctx).create, ctx.workspace_id, ctx.principal.token_id, request)


async def get_library(ctx: Context, _: None) -> LibraryOut:
    return await run_sync(libraries_of(ctx).get, ctx.workspace_id, ctx.path["library_id"])


async def update_library(ctx: Context, request: LibraryInUpdate) -> LibraryOut:
    return await run_sync(libraries_of(ctx).update, ctx.workspace_id, ctx.path["library_id"], request)


async def delete_library(ctx: Context, _: None) -> LibraryOut:
    return await run_sync(libraries_of(ctx).delete, ctx.workspace_id, ctx.path["library_id"])


async def list_documents(ctx: Context, _: None) -> ListDocumentOut:
    return await run_sync(libraries_of(ctx).list_documents, ctx.workspace_id, ctx.path["library_id"], ctx.query)


async def upload_document(ctx: Context, upload: DocumentUpload) -> RawJSON:
    """201 with the new document; 200 with the one already holding these bytes."""
    document, created = await run_sync(lambda: libraries_of(ctx).upload(
        ctx.workspace_id, ctx.principal.token_id, ctx.path["library_id"], upload.sink, upload.filename))
    return RawJSON(document.model_dump_json().encode(), status=None if created else 200)


async def get_document(ctx: Context, _: None) -> DocumentOut:
    return await run_sync(libraries_of(ctx).get_document, ctx.workspace_id, ctx.path["library_id"],
                          ctx.path["document_id"])


async def delete_document(ctx: Context, _: None) -> NoContent:
    await run_sync(libraries_of(ctx).delete_document, ctx.workspace_id, ctx.path["library_id"],
                   ctx.path["document_id"])
    return NoContent()


async def update_document(ctx: Context, request: DocumentUpdateIn) -> DocumentOut:
    return await run_sync(libraries_of(ctx).update_document, ctx.workspace_id, ctx.path["library_id"],
                          ctx.path["document_id"], request)


async def document_text(ctx: Context, _: None) -> DocumentTextContent:
    """The extracted text; a document still processed is waited for (``library_text_wait_seconds``), polled with
    a growing pause and without holding a thread."""
    service, args = libraries_of(ctx), (ctx.workspace_id, ctx.path["library_id"], ctx.path["document_id"])
    deadline = anyio.current_time() + ctx.services.settings.library_text_wait_seconds
    pause = 0.05
    while (await run_sync(service.status, *args)).processing_status == "Running":
        if anyio.current_time() + pause > deadline:
            break
        await anyio.sleep(pause)
        pause = min(pause * 2, 1.0)
    return await run_sync(service.text_content, *args)


async def document_status(ctx: Context, _: None) -> ProcessingStatusOut:
    return await run_sync(libraries_of(ctx).status, ctx.workspace_id, ctx.path["library_id"],
                          ctx.path["document_id"])


async def reprocess_document(ctx: Context, _: None) -> NoContent:
    await run_sync(libraries_of(ctx).reprocess, ctx.workspace_id, ctx.path["library_id"], ctx.path["document_id"])
    return NoContent()


LIBRARIES: dict[str, Work] = {
    "list_libraries": list_libraries,
    "create_library": create_library,
    "get_library": get_library,
    "update_library": update_library,
    "delete_library": delete_library,
    "list_library_documents": list_documents,
    "create_library_document": upload_document,
    "get_library_document": get_document,
    "delete_library_document": delete_document,
    "update_library_document": update_document,
    "get_library_document_text_content": document_text,
    "get_library_document_status": document_status,
    "reprocess_library_document": reprocess_document,
}
