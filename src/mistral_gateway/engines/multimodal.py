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
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from mistral_gateway.engines.base import (
    ChatMessage,
    ContextOverflow,
    Delta,
    EngineError,
    ImageInput,
    InvalidInput,
    SamplingParams,
)

__all__ = ["MEDIA_PATH", "MediaPath", "MediaPrompt", "media_chunk", "media_marker", "media_prompt", "place_markers"]

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


class MediaPath:
    """Rendering and generation for a ``LlamaEngine`` with a projector, over that engine's transport (given as
    callables: its blocking JSON calls, its worker stream with restart handling, its sampling fields)."""

    def __init__(self, marker: str, model_id: str, context_length: int, *,
                 post: Callable[[str, dict[str, Any]], Awaitable[Any]],
                 chunks: Callable[[dict[str, Any], str], AsyncGenerator[dict[str, Any], None]],
                 sampling: Callable[[SamplingParams], dict[str, Any]],
                 message_json: Callable[[ChatMessage], dict[str, Any]]) -> None:
        self.marker = marker
        self.model_id = model_id
        self.context_length = context_length
        self._post, self._chunks, self._sampling, self._message_json = post, chunks, sampling, message_json

    async def render(self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] | None) -> MediaPrompt:
        body: dict[str, Any] = {"messages": [self._message_json(m) for m in place_markers(messages, self.marker)]}
        if tools:
            body["tools"] = list(tools)
        result = await self._post("/apply-template", body)
        if not isinstance(result, dict) or not isinstance(result.get("prompt"), str):
            raise EngineError(f"model {self.model_id!r}: llama.cpp /apply-template answered {str(result)[:200]}")
        return MediaPrompt(result["prompt"], [image for m in messages for image in m.images])

    async def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[Delta]:
        """As ``LlamaEngine.stream`` (min_tokens too: EOS masked for the first ones, then on freely). The prompt's
        size, images included, is known only from llama.cpp's first chunk: ``media_chunk`` checks it then."""
        max_tokens, head = params.max_tokens, []
        first = params.min_tokens if max_tokens is None else min(params.min_tokens, max_tokens)
        prompt_tokens = completion = 0
        if first > 0:
            async for delta in self._phase(prompt, params, first, max_tokens, ignore_eos=True):
                head.append(delta.text)
                if delta.finish_reason is not None:
                    prompt_tokens, completion = delta.prompt_tokens or 0, delta.completion_tokens or 0
                if delta.text:
                    yield Delta(delta.text)
            if max_tokens is not None and completion >= max_tokens:
                yield Delta("", "length", prompt_tokens, completion)
                return
        left = None if max_tokens is None else max_tokens - completion
        async for delta in self._phase(prompt + "".join(head), params, left, left, ignore_eos=False):
            if delta.finish_reason is None:
                yield delta
            else:
                yield Delta(delta.text, delta.finish_reason, prompt_tokens or delta.prompt_tokens,
                            completion + (delta.completion_tokens or 0))

    async def _phase(self, prompt: str, params: SamplingParams, n_predict: int | None, budget: int | None,
                     *, ignore_eos: bool) -> AsyncIterator[Delta]:
        # n_predict 0 still generates one token in llama.cpp: generate it, report none (the prompt's size is wanted)
        limit = -1 if n_predict is None else max(n_predict, 1)
        body = self._sampling(params) | {"prompt": media_prompt(prompt), "stream": True, "ignore_eos": ignore_eos,
                                         "n_predict": limit,
                                         # seeded: the whole prompt evaluated the same way every time (see llama.py)
                                         "cache_prompt": params.seed is None}
        chunks = self._chunks(body, MEDIA_PATH)
        finished = False
        try:
            async for item in chunks:
                if finished:  # read to the end of the response: its connection then goes back to the pool
                    continue
                delta = media_chunk(item, budget, self.context_length, self.model_id)
                finished = delta.finish_reason is not None
                if n_predict == 0:
                    if finished:
                        yield Delta("", "length", delta.prompt_tokens, 0)
                    continue
                yield delta
            if not finished:
                raise EngineError(f"model {self.model_id!r}: the llama.cpp stream ended before the generation did")
        finally:
            await chunks.aclose()  # early: closes the connection, which stops the slot


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
        if error.get("type") == "invalid_request_error" and "image" in message.lower():
            # "Failed to load image or audio file": the header passed our checks, the decoder refused the rest
            raise InvalidInput(f"model {model_id!r} cannot decode an image of the request: {message}")
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

