"""llama.cpp's multimodal path, for models loaded with a projector (``mmproj``).

With a projector llama-server refuses prompts given as token ids, so such a model is prompted with text: the chat
template's output with one media marker where each image goes, the images alongside as base64
(``POST /completion`` with ``{"prompt_string", "multimodal_data"}``; the OpenAI-style ``/v1/completions`` takes no
prompt object). llama.cpp decodes each image, runs the vision encoder and projector, and feeds the embeddings to
the text model in the marker's place. The marker is ours, random per engine, and handed to the worker
(``LLAMA_MEDIA_MARKER``), so it survives worker restarts and a caller cannot guess it into their text.

Models without a projector never come here: their prompts stay token ids (``engines.llama``).
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from mistral_gateway.engines.base import ChatMessage, ContextOverflow, Delta, EngineError, ImageInput, InvalidInput

__all__ = ["MEDIA_PATH", "MediaPrompt", "media_chunk", "media_marker", "media_prompt", "place_markers"]

MEDIA_PATH = "/completion"  # llama-server's own completion endpoint: the one that takes images


class MediaPrompt(str):
    """A rendered prompt that carries its images: services pass prompts around as strings, and one that is
    extended (``prompt + text``, e.g. a second generation phase) keeps them."""

    images: tuple[ImageInput, ...]

    def __new__(cls, text: str, images: Sequence[ImageInput] = ()) -> MediaPrompt:
        prompt = super().__new__(cls, text)
        prompt.images = tuple(images)
        return prompt

    def __add__(self, other: str) -> MediaPrompt:
        return MediaPrompt(str.__add__(self, other), self.images)


def media_marker(*, isolated: bool) -> str:
    """The marker for a new engine. llama.cpp reads ``LLAMA_MEDIA_MARKER`` once per process: a worker process gets
    its own; models inside this process share whichever this process set first."""
    marker = f"<__media_{secrets.token_hex(12)}__>"
    if isolated:
        return marker
    return os.environ.setdefault("LLAMA_MEDIA_MARKER", marker)


def place_markers(messages: Sequence[ChatMessage], marker: str) -> list[ChatMessage]:
    """Each message's text with the marker at each of its images' offsets (the template then renders them)."""
    out = []
    for message in messages:
        if not message.images:
            out.append(message)
            continue
        text, at = [], 0
        for image in sorted(message.images, key=lambda i: i.offset):
            offset = min(max(image.offset, at), len(message.content))
            text += [message.content[at:offset], marker]
            at = offset
        text.append(message.content[at:])
        out.append(replace(message, content="".join(text), images=()))
    return out


def media_prompt(prompt: str) -> dict[str, Any]:
    """The ``prompt`` of a ``/completion`` request: text (markers included) and the images, in marker order."""
    images = getattr(prompt, "images", ())
    return {"prompt_string": str(prompt),
            "multimodal_data": [base64.b64encode(image.data).decode("ascii") for image in images]}


def media_chunk(chunk: dict[str, Any], max_tokens: int | None, context_length: int, model_id: str) -> Delta:
    """One ``/completion`` stream chunk as a ``Delta``. The first one tells the prompt's real size (image tokens
    included, unknown before llama.cpp has encoded the images): prompt plus ``max_tokens`` must fit the context."""
    if "error" in chunk:
        error = chunk["error"]
        message = str(error.get("message", error))[:300]
        if error.get("type") == "exceed_context_size_error":
            raise ContextOverflow(message, prompt_tokens=error.get("n_prompt_tokens"),
                                  context_length=error.get("n_ctx"))
        if error.get("type") == "invalid_request_error":  # e.g. "Failed to load image or audio file"
            raise InvalidInput(f"model {model_id!r} refused the request's input: {message}")
        raise EngineError(f"model {model_id!r}: llama.cpp: {message}")
    prompt_tokens = int(chunk.get("tokens_evaluated") or 0)
    if max_tokens is not None and prompt_tokens + max_tokens > context_length:
        raise ContextOverflow(f"prompt ({prompt_tokens} tokens, images included) + max_tokens ({max_tokens}) exceeds "
                              f"the context window of {model_id} ({context_length} tokens)",
                              prompt_tokens=prompt_tokens, context_length=context_length)
    text = str(chunk.get("content") or "")
    if not chunk.get("stop"):
        return Delta(text)
    reason = "length" if chunk.get("stop_type") == "limit" else "stop"
    return Delta(text, reason, prompt_tokens, int(chunk.get("tokens_predicted") or 0))

