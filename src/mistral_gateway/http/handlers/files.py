"""Files handlers whose input the registry row cannot describe: the multipart upload, the signed URL's address."""

from __future__ import annotations

from mistral_gateway.app import Result
from mistral_gateway.app.resources import Upload
from mistral_gateway.errors import BadRequest
from mistral_gateway.http.handlers import Call
from mistral_gateway.http.multipart import abort_sink, read_multipart
from mistral_gateway.services.files import UploadSink

__all__ = ["get_signed_url", "upload_file"]


async def upload_file(call: Call) -> Result:
    files = call.services.files
    form, sink = await read_multipart(call.request, file_field="file", open_sink=files.open_upload,
                                      max_file_bytes=files.max_upload_bytes)
    if sink is None or form.file is None:
        raise BadRequest("missing the 'file' part (multipart field 'file' with a filename)", param="file",
                         code="MISSING_FILE")
    assert isinstance(sink, UploadSink)
    try:
        upload = Upload(sink, form.file.filename, purpose=form.get("purpose"),
                        expiry_hours=_optional_int(form.get("expiry"), "expiry"), visibility=form.get("visibility"))
        return await call.invoke(upload)
    except BaseException:
        await abort_sink(sink)  # whatever did not make it durable is discarded (a no-op once committed)
        raise


async def get_signed_url(call: Call) -> Result:
    return await call.invoke(query=call.query(), base_url=call.base_url())


def _optional_int(raw: str | None, name: str) -> int | None:
    text = (raw or "").strip()
    if text in ("", "null"):
        return None
    # ASCII digits only, and few of them: int() accepts other scripts' digits and fails past 4,300 of them
    if not (text.isascii() and text.removeprefix("-").isdigit() and len(text) <= 18):
        raise BadRequest(f"{name} must be an integer of at most 18 digits", param=name)
    return int(text)
