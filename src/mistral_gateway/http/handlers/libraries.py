"""The document upload: multipart, streamed into a blob; the library is checked before the body is read."""

from __future__ import annotations

from anyio.to_thread import run_sync

from mistral_gateway.app import Result
from mistral_gateway.app.libraries import DocumentUpload
from mistral_gateway.errors import BadRequest
from mistral_gateway.http.handlers import Call
from mistral_gateway.http.multipart import abort_sink, read_multipart
from mistral_gateway.services.files import UploadSink

__all__ = ["upload_document"]


async def upload_document(call: Call) -> Result:
    libraries = call.services.libraries
    assert libraries is not None, "build_services wires the libraries service"
    await run_sync(libraries.library, call.workspace_id, call.path["library_id"])  # a 404 before any upload
    form, sink = await read_multipart(call.request, file_field="file", open_sink=libraries.open_upload,
                                      max_file_bytes=libraries.limits.max_document_bytes)
    if sink is None or form.file is None:
        raise BadRequest("missing the 'file' part (multipart field 'file' with a filename)", param="file",
                         code="MISSING_FILE")
    assert isinstance(sink, UploadSink)
    try:
        return await call.invoke(DocumentUpload(sink, form.file.filename))
    except BaseException:
        await abort_sink(sink)  # whatever did not make it durable is discarded (a no-op once committed)
        raise
