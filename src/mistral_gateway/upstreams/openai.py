"""Mistral ⇄ OpenAI translation for the ``openai`` upstream kind (vLLM, llama-server, Ollama, ...).

Chat maps almost field for field; FIM goes to the legacy ``/v1/completions`` with ``suffix``; embeddings map
``output_dimension`` to ``dimensions``. What an OpenAI server cannot express is refused with a 400 naming the field
rather than silently dropped.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from mistral_gateway.errors import BadRequest
from mistral_gateway.protocol.safety import with_safe_prompt

__all__ = ["ChunkTranslator", "chat_request", "chat_response", "embeddings_request", "embeddings_response",
           "fim_request", "fim_response"]

_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls",
           "content_filter": "error", "error": "error", "model_length": "length"}
_DROPPED = ("safe_prompt", "random_seed", "prompt_mode", "prediction", "metadata", "min_tokens")


def chat_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    out = {k: v for k, v in body.items() if k not in _DROPPED}
    out["model"] = model
    if body.get("random_seed") is not None:
        out["seed"] = body["random_seed"]
    if body.get("safe_prompt"):
        out["messages"] = with_safe_prompt(list(body.get("messages") or []))  # as the local path applies it
    if body.get("prediction") is not None:
        out["prediction"] = body["prediction"]
    if body.get("min_tokens"):
        out["min_tokens"] = body["min_tokens"]  # vLLM's extension; other servers ignore unknown fields
    if out.get("tool_choice") == "any":
        out["tool_choice"] = "required"
    if body.get("stream"):
        out["stream_options"] = {"include_usage": True}
    return out


def _usage(data: dict[str, Any] | None) -> dict[str, int]:
    data = data or {}
    prompt = int(data.get("prompt_tokens") or 0)
    completion = int(data.get("completion_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": int(data.get("total_tokens") or prompt + completion)}


def _tool_calls(calls: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if not calls:
        return None
    out = []
    for i, call in enumerate(calls):
        fn = call.get("function") or {}
        item: dict[str, Any] = {"id": call.get("id") or "", "type": "function",
                                "function": {"name": fn.get("name"), "arguments": fn.get("arguments", "")},
                                "index": call.get("index", i)}
        if item["function"]["name"] is None:
            del item["function"]["name"]  # stream continuation: arguments only
        out.append(item)
    return out


def _finish(reason: str | None) -> str | None:
    return None if reason is None else _FINISH.get(reason, "stop")


def chat_response(data: dict[str, Any], model: str) -> dict[str, Any]:
    choices = []
    for i, choice in enumerate(data.get("choices") or []):
        message = choice.get("message") or {}
        choices.append({
            "index": choice.get("index", i),
            "message": {"role": "assistant", "content": message.get("content") or "",
                        "tool_calls": _tool_calls(message.get("tool_calls")), "prefix": False},
            "finish_reason": _finish(choice.get("finish_reason")) or "stop",
        })
    return {"id": data.get("id") or uuid.uuid4().hex, "object": "chat.completion", "model": model,
            "usage": _usage(data.get("usage")), "created": int(data.get("created") or time.time()),
            "choices": choices}


class ChunkTranslator:
    """OpenAI stream chunks → Mistral's. OpenAI sends usage in a last chunk without choices (``include_usage``);
    Mistral puts it on the chunk with the finish reason, so that chunk is held back one event."""

    def __init__(self, model: str, *, fim: bool = False) -> None:
        self.model = model
        self.fim = fim
        self._held: dict[str, Any] | None = None

    def feed(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        choices = data.get("choices") or []
        if not choices and data.get("usage") and self._held is not None:
            self._held["usage"] = _usage(data["usage"])
            out.append(self._held)
            self._held = None
            return out
        if self._held is not None:
            out.append(self._held)
            self._held = None
        chunk: dict[str, Any] = {"id": data.get("id") or "", "object": "chat.completion.chunk",
                                 "created": int(data.get("created") or time.time()), "model": self.model,
                                 "choices": [self._choice(c, i) for i, c in enumerate(choices)]}
        if data.get("usage"):
            chunk["usage"] = _usage(data["usage"])
        if any(c.get("finish_reason") for c in choices) and "usage" not in chunk:
            self._held = chunk
        elif choices or "usage" in chunk:
            out.append(chunk)
        return out

    def finish(self) -> list[dict[str, Any]]:
        held, self._held = self._held, None
        return [held] if held is not None else []

    def _choice(self, choice: dict[str, Any], i: int) -> dict[str, Any]:
        if self.fim:
            delta: dict[str, Any] = {"content": choice.get("text", "")}
        else:
            raw = choice.get("delta") or {}
            delta = {"content": raw.get("content")}
            if raw.get("role"):
                delta["role"] = "assistant"
            calls = _tool_calls(raw.get("tool_calls"))
            if calls:
                delta["tool_calls"] = calls
        return {"index": choice.get("index", i), "delta": delta, "finish_reason": _finish(choice.get("finish_reason"))}


def fim_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "prompt": body.get("prompt", ""), "suffix": body.get("suffix") or ""}
    for name in ("max_tokens", "temperature", "top_p", "stop", "stream", "min_tokens"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("random_seed") is not None:
        out["seed"] = body["random_seed"]
    if body.get("stream"):
        out["stream_options"] = {"include_usage": True}
    return out


def fim_response(data: dict[str, Any], model: str) -> dict[str, Any]:
    choices = [{"index": c.get("index", i),
                "message": {"role": "assistant", "content": c.get("text") or "", "tool_calls": None, "prefix": False},
                "finish_reason": _finish(c.get("finish_reason")) or "stop"}
               for i, c in enumerate(data.get("choices") or [])]
    return {"id": data.get("id") or uuid.uuid4().hex, "object": "chat.completion", "model": model,
            "usage": _usage(data.get("usage")), "created": int(data.get("created") or time.time()),
            "choices": choices}


def embeddings_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    dtype = body.get("output_dtype")
    if dtype not in (None, "float"):
        raise BadRequest(f"output_dtype {dtype!r} is not available from this model's OpenAI-compatible backend; "
                         "use 'float'", code="UNSUPPORTED_PARAMETER", param="output_dtype")
    out: dict[str, Any] = {"model": model, "input": body.get("input")}
    dimensions = body.get("output_dimension") or body.get("dimensions")
    if dimensions is not None:
        out["dimensions"] = dimensions
    if body.get("encoding_format") is not None:
        out["encoding_format"] = body["encoding_format"]
    return out


def embeddings_response(data: dict[str, Any], model: str) -> dict[str, Any]:
    usage = data.get("usage") or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    return {"id": data.get("id") or uuid.uuid4().hex, "object": "list", "model": model,
            "data": [{"object": "embedding", "embedding": d.get("embedding"), "index": d.get("index", i)}
                     for i, d in enumerate(data.get("data") or [])],
            "usage": {"prompt_tokens": prompt, "completion_tokens": 0,
                      "total_tokens": int(usage.get("total_tokens") or prompt)}}
