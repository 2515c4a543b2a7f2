"""Audio in chat: ``input_audio`` content parts (base64, or a URL) sent to a speech model (the voxtral ids) are
transcribed locally and the transcript takes the part's place in the message text; then the configured chat model
(``audio_chat_model``) answers. A cascade, not a model that hears: tone and non-speech sounds are lost (README
"Audio in chat").
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from mistral_gateway.engines.manager import kind_of
from mistral_gateway.errors import BadRequest, PayloadTooLarge, ServiceUnavailable
from mistral_gateway.protocol.chat import ChatCompletionRequest, TextChunk
from mistral_gateway.services.models import ModelCatalog
from mistral_gateway.services.transcription import TranscriptionService

__all__ = ["MAX_AUDIO_PARTS", "ChatAudio"]

MAX_AUDIO_PARTS = 8  # per request: each is decoded and transcribed before the chat model starts


class ChatAudio:
    def __init__(self, catalog: ModelCatalog, transcription: TranscriptionService, chat_model: str) -> None:
        self._catalog = catalog
        self._transcription = transcription
        self.chat_model = chat_model

    async def cascade(self, request: ChatCompletionRequest) -> tuple[ChatCompletionRequest, str]:
        """``request`` with its audio parts transcribed, and the name of the model that answers it: the request's
        own, unless that is a speech model (then ``chat_model``). Audio for any other model is a 400."""
        parts = [(i, j) for i, message in enumerate(request.messages) if isinstance(message.content, list)
                 for j, part in enumerate(message.content) if part.type == "input_audio"]
        entry = self._catalog.resolve(request.model)
        if entry is None or kind_of(entry) != "speech":
            if parts:
                raise BadRequest(f"model {request.model!r} does not accept audio (capability 'audio'); the voxtral "
                                 "models do", code="UNSUPPORTED_MODEL_CAPABILITY", param="messages")
            return request, request.model
        if parts and "audio" not in entry.capabilities:
            raise BadRequest(f"model {request.model!r} does not accept audio in chat (capability 'audio')",
                             code="UNSUPPORTED_MODEL_CAPABILITY", param="messages")
        if len(parts) > MAX_AUDIO_PARTS:
            raise BadRequest(f"{len(parts)} audio parts in one request; the limit is {MAX_AUDIO_PARTS}",
                             code="TOO_MANY_AUDIO_PARTS", param="messages")
        answering = self._catalog.resolve(self.chat_model)
        if answering is None or kind_of(answering) == "speech":
            raise ServiceUnavailable(f"chat with {request.model!r} needs a chat model: audio_chat_model "
                                     f"{self.chat_model!r} is not one in this server's catalog", retry_after=60.0,
                                     code="AUDIO_CHAT_MODEL_MISSING")
        messages = list(request.messages)
        for i, j in parts:
            message = messages[i]
            content: list[Any] = list(message.content)
            data = await self._audio(content[j].input_audio, f"messages[{i}].content[{j}]")
            text = await self._transcription.transcribe_bytes(request.model, data)
            content[j] = TextChunk(text=("\n" if j else "") + f'Audio transcript: "{text}"\n')
            messages[i] = message.model_copy(update={"content": content})
        return request.model_copy(update={"messages": messages}), self.chat_model

    async def _audio(self, value: str, where: str) -> bytes:
        """Base64 (or a base64 data URL), or an http(s) URL: the SDK's examples send both."""
        if value[:8].lower().startswith(("http://", "https://")):
            return await self._transcription.read_url(value, what=f"{where}.input_audio", param="messages")
        return self._decoded(value, where)

    def _decoded(self, value: str, where: str) -> bytes:
        limit = self._transcription.limits.max_bytes
        if value.startswith("data:"):  # a data URL: its payload is the base64 audio
            value = value.partition(",")[2]
        too_large = PayloadTooLarge(f"{where}: the audio exceeds the limit of {limit} bytes (audio_max_bytes)",
                                    code="FILE_TOO_LARGE")
        if len(value) > 4 * -(-limit // 3):  # before decoding: a huge string is refused unread
            raise too_large
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"{where}: input_audio is not valid base64", code="INVALID_AUDIO",
                             param="messages") from None
        if len(data) > limit:
            raise too_large
        return data
