"""The transcription handler: one multipart route for both operations (the form's ``stream`` picks the twin)."""

from __future__ import annotations

from mistral_gateway.app import Result
from mistral_gateway.errors import BadRequest, PayloadTooLarge
from mistral_gateway.http.bodies import validate_body
from mistral_gateway.http.handlers import Call
from mistral_gateway.http.multipart import read_multipart
from mistral_gateway.protocol.audio import form_body
from mistral_gateway.services.transcription import AudioRequest, Upload

__all__ = ["create_transcription"]


class _Buffer:
    """The ``file`` part in memory, bounded (the decoder needs it whole)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        if len(self.data) + len(data) > self.limit:
            raise PayloadTooLarge(f"the audio exceeds the limit of {self.limit} bytes (max_audio_bytes)",
                                  code="FILE_TOO_LARGE")
        self.data += data

    def abort(self) -> None:
        self.data = bytearray()


async def create_transcription(call: Call) -> Result:
    limit = call.services.transcription.limits.max_bytes
    buffer = _Buffer(limit)
    form, _ = await read_multipart(call.request, file_field="file", open_sink=lambda: buffer, max_file_bytes=limit)
    if "file" in form.fields:
        raise BadRequest("the 'file' part needs a filename (Content-Disposition: form-data; name=\"file\"; "
                         "filename=\"...\")", param="file", code="MISSING_FILE")
    body = form_body(form.fields)
    if body.get("stream") is True and call.op.stream == "never" and call.op.twin:
        call.op = call.services.registry.get(call.op.twin)  # the streaming twin answers, and is recorded
        call.exchange.op = call.op
    assert call.op.request is not None
    request = validate_body(call.op.request, body)
    upload = Upload(bytes(buffer.data), form.file.filename) if form.file is not None else None
    return await call.invoke(AudioRequest(request, upload))
