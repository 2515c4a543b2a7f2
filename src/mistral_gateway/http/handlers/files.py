"""Files handlers: thin wrappers from HTTP to FileService."""

from __future__ import annotations

from anyio.to_thread import run_sync

from mistral_gateway.app.results import BinaryResult
from mistral_gateway.errors import BadRequest
from mistral_gateway.http.handlers import Call
from mistral_gateway.http.multipart import read_multipart
from mistral_gateway.protocol.files import (
    DeleteFileOut,
    FileSignedURL,
    ListFilesOut,
    RetrieveFileOut,
    UploadFileOut,
)
from mistral_gateway.services.files import UploadSink

__all__ = ["delete_file", "download_file", "get_signed_url", "list_files", "retrieve_file", "upload_file"]


async def upload_file(call: Call) -> UploadFileOut:
    return await call.run(lambda: _upload_file(call))


async def _upload_file(call: Call) -> UploadFileOut:
    files = call.services.files
    form, sink = await read_multipart(call.request, file_field="file", open_sink=files.open_upload,
                                      max_file_bytes=files.max_upload_bytes)
    if sink is None or form.file is None:
        raise BadRequest("missing the 'file' part (multipart field 'file' with a filename)", param="file",
                         code="MISSING_FILE")
    assert isinstance(sink, UploadSink)
    try:
        expiry = _optional_int(form.get("expiry"), "expiry")
    except BaseException:
        sink.abort()
        raise
    return await run_sync(lambda: files.finish_upload(
        call.workspace_id, sink, filename=form.file.filename if form.file else None,
        purpose=form.get("purpose"), expiry_hours=expiry, visibility=form.get("visibility")))


async def list_files(call: Call) -> ListFilesOut:
    return await call.run(lambda: _list_files(call))


async def _list_files(call: Call) -> ListFilesOut:
    query = call.query()
    return await run_sync(call.services.files.list, call.workspace_id, query)


async def retrieve_file(call: Call) -> RetrieveFileOut:
    return await call.run(lambda: _retrieve_file(call))


async def _retrieve_file(call: Call) -> RetrieveFileOut:
    return await run_sync(call.services.files.retrieve, call.workspace_id, call.path["file_id"])


async def delete_file(call: Call) -> DeleteFileOut:
    return await call.run(lambda: _delete_file(call))


async def _delete_file(call: Call) -> DeleteFileOut:
    return await run_sync(call.services.files.delete, call.workspace_id, call.path["file_id"])


async def download_file(call: Call) -> BinaryResult:
    return await call.run(lambda: _download_file(call))


async def _download_file(call: Call) -> BinaryResult:
    download = await run_sync(call.services.files.download, call.workspace_id, call.path["file_id"])
    return BinaryResult(chunks=download.chunks, filename=download.filename, size=download.size)


async def get_signed_url(call: Call) -> FileSignedURL:
    return await call.run(lambda: _get_signed_url(call))


async def _get_signed_url(call: Call) -> FileSignedURL:
    query = call.query()
    return await run_sync(call.services.files.signed_url, call.workspace_id, call.path["file_id"], query.expiry,
                          call.base_url())


def _optional_int(raw: str | None, name: str) -> int | None:
    text = (raw or "").strip()
    if text in ("", "null"):
        return None
    # ASCII digits only, and few of them: int() accepts other scripts' digits and fails past 4,300 of them
    if not (text.isascii() and text.removeprefix("-").isdigit() and len(text) <= 18):
        raise BadRequest(f"{name} must be an integer of at most 18 digits", param=name)
    return int(text)
