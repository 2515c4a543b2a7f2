"""The transcription handler: one route for both operations (the form's ``stream`` picks the twin).

The body is multipart/form-data, or a URL-encoded form when there is no file part (the SDK sends one when the audio
is a ``file_url`` or ``file_id``: httpx encodes a form without files that way).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from mistral_gateway.app import Result
from mistral_gateway.errors import BadRequest, PayloadTooLarge
from mistral_gateway.http.bodies import read_body, validate_body
from mistral_gateway.http.handlers import Call
from mistral_gateway.http.multipart import MAX_TEXT_BYTES, MultipartForm, read_multipart
from mistral_gateway.protocol.audio import MAX_CONTEXT_BIAS, form_body
from mistral_gateway.services.transcription import AudioRequest, Upload

__all__ = ["create_transcription"]

MAX_FORM_PARTS = MAX_CONTEXT_BIAS + 16  # the context_bias items (repeated fields), the file, every other field


class _Buffer:
    """The ``file`` part in memory, bounded (the decoder needs it whole)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        if len(self.data) + len(data) > self.limit:
            raise PayloadTooLarge(f"the audio exceeds the limit of {self.limit} bytes (audio_max_bytes)",
                                  code="FILE_TOO_LARGE")
        self.data += data

    def abort(self) -> None:
        self.data = bytearray()


async def create_transcription(call: Call) -> Result:
    limit = call.services.transcription.limits.max_bytes
    buffer = _Buffer(limit)
    if call.request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = await _urlencoded(call)
    else:
        form, _ = await read_multipart(call.request, file_field="file", open_sink=lambda: buffer,
                                       max_file_bytes=limit, max_parts=MAX_FORM_PARTS, file_needs_name=False)
    body = form_body(form.fields)
    if body.get("stream") is True and call.op.stream == "never" and call.op.twin:
        call.op = call.services.registry.get(call.op.twin)  # the streaming twin answers, and is recorded
        call.exchange.op = call.op
    assert call.op.request is not None
    request = validate_body(call.op.request, body)
    upload = Upload(bytes(buffer.data), form.file.filename) if form.file is not None else None
    call.form_read = True  # a client that leaves before the transcript is ready stops the decoding
    return await call.invoke(AudioRequest(request, upload))


async def _urlencoded(call: Call) -> MultipartForm:
    body = await read_body(call.request, MAX_TEXT_BYTES)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=MAX_FORM_PARTS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"malformed form body: {exc}", code="MALFORMED_FORM") from None
    form = MultipartForm()
    for name, value in pairs:
        form.fields.setdefault(name, []).append(value)
    return form
