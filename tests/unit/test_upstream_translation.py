"""Upstream error bodies, OpenAI ⇄ Mistral translation and SSE parsing: pure functions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mistral_gateway.errors import UpstreamError, ValidationFailed
from mistral_gateway.protocol.chat import ChatCompletionResponse, CompletionChunk
from mistral_gateway.protocol.safety import SAFE_PROMPT
from mistral_gateway.upstreams import openai
from mistral_gateway.upstreams.errors import upstream_error
from mistral_gateway.upstreams.relay import sse_payloads, usage_from_tail


@pytest.mark.parametrize(("body", "message", "code"), [
    (b'{"object":"error","message":"no such model","type":"invalid_request_error","param":"model","code":"1500"}',
     "no such model", "1500"),
    (b'{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}',
     "Rate limit reached", "rate_limit_exceeded"),
    (b'{"data":{"error":{"message":"unknown file","code":"FILE_NOT_FOUND"}}}', "unknown file", "FILE_NOT_FOUND"),
    (b'{"message":"Unauthorized","request_id":"abc"}', "Unauthorized", None),
    (b'{"detail":"Not Found"}', "Not Found", None),
    (b'{"object":"error","message":{"detail":[{"msg":"bad"}]},"code":3051}', '{"detail":[{"msg":"bad"}]}', "3051"),
])
def test_error_shapes_keep_message_and_code(body: bytes, message: str, code: str | None) -> None:
    err = upstream_error("up", 418, body, {"retry-after": "7", "set-cookie": "x"})
    assert isinstance(err, UpstreamError)
    assert (err.status, err.message) == (418, message)
    assert err.code == (code or "UPSTREAM_418")
    assert err.headers == {"Retry-After": "7"}  # only the headers a caller can act on


def test_422_detail_items_are_kept() -> None:
    detail = [{"type": "missing", "loc": ["body", "model"], "msg": "Field required"}]
    err = upstream_error("up", 422, b'{"detail": ' + str(detail).replace("'", '"').encode() + b"}", {})
    assert isinstance(err, ValidationFailed) and err.detail == detail and err.status == 422


def test_non_json_error_keeps_the_start_of_the_text() -> None:
    err = upstream_error("up", 502, b"<html>Bad gateway</html>" + b"x" * 2000, {})
    assert err.status == 502 and "<html>Bad gateway" in err.message and len(err.message) < 600


def test_openai_chat_request_translation() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "random_seed": 3, "safe_prompt": True,
            "tool_choice": "any", "prompt_mode": "reasoning", "stream": True, "temperature": 0.1}
    out = openai.chat_request(body, "up-model")
    assert out["model"] == "up-model" and out["seed"] == 3 and out["tool_choice"] == "required"
    assert out["messages"][0] == {"role": "system", "content": SAFE_PROMPT} and len(out["messages"]) == 2
    assert "random_seed" not in out and "safe_prompt" not in out and "prompt_mode" not in out
    assert out["stream_options"] == {"include_usage": True} and out["temperature"] == 0.1


def test_safe_prompt_joins_the_system_prompt_as_on_the_local_path() -> None:
    """The local engines put SAFE_PROMPT at the head of an existing system prompt (``with_system``): so does the
    ``openai`` translation, rather than adding a second system message."""
    from mistral_gateway.engines.base import ChatMessage
    from mistral_gateway.services.reasoning import with_system

    body = {"model": "m", "safe_prompt": True,
            "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}]}
    out = openai.chat_request(body, "up")["messages"]
    local = with_system([ChatMessage("system", "Be terse."), ChatMessage("user", "hi")], SAFE_PROMPT)
    assert [(m["role"], m["content"]) for m in out] == [(m.role, m.content) for m in local]
    assert out[0]["content"] == f"{SAFE_PROMPT}\n\nBe terse."
    chunks = openai.chat_request({**body, "messages": [{"role": "system", "content": [{"type": "text", "text": "X"}]}]},
                                 "up")["messages"]
    assert chunks == [{"role": "system", "content": [{"type": "text", "text": f"{SAFE_PROMPT}\n\n"},
                                                     {"type": "text", "text": "X"}]}]
    assert openai.chat_request({**body, "safe_prompt": False}, "up")["messages"] == body["messages"]


def test_openai_chat_response_is_a_valid_mistral_response() -> None:
    data = {"id": "chatcmpl-1", "created": 5, "model": "up", "choices": [
        {"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None, "refusal": None,
                                                                 "tool_calls": [{"id": "call_1", "type": "function",
                                                                                 "function": {"name": "f",
                                                                                              "arguments": "{}"}}]}},
        {"index": 1, "finish_reason": "content_filter", "message": {"content": "x"}}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}}
    out = ChatCompletionResponse.model_validate(openai.chat_response(data, "asked"))
    assert out.model == "asked" and out.usage.total_tokens == 5
    assert out.choices[0].finish_reason == "tool_calls" and out.choices[0].message.tool_calls[0].function["name"] == "f"
    assert out.choices[1].finish_reason == "error"


def test_openai_stream_usage_moves_onto_the_finishing_chunk() -> None:
    t = openai.ChunkTranslator("asked")
    events = []
    for payload in [
        {"id": "c", "created": 1, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"id": "c", "created": 1, "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
        {"id": "c", "created": 1, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"id": "c", "created": 1, "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 1}},
    ]:
        events += t.feed(payload)
    events += t.finish()
    chunks = [CompletionChunk.model_validate(e) for e in events]
    assert [c.choices[0].delta.content for c in chunks] == ["", "Hi", None]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage.total_tokens == 5
    assert all(c.model == "asked" for c in chunks)


def test_openai_stream_without_usage_still_sends_the_finish() -> None:
    t = openai.ChunkTranslator("m", fim=True)
    events = t.feed({"id": "c", "choices": [{"index": 0, "text": "x", "finish_reason": "length"}]}) + t.finish()
    assert len(events) == 1 and events[0]["choices"][0]["delta"]["content"] == "x"
    assert events[0]["choices"][0]["finish_reason"] == "length"


def test_openai_fim_and_embeddings_translation() -> None:
    fim = openai.fim_request({"model": "m", "prompt": "a", "suffix": "b", "max_tokens": 5, "random_seed": 1}, "up")
    assert fim == {"model": "up", "prompt": "a", "suffix": "b", "max_tokens": 5, "seed": 1}
    resp = openai.fim_response({"choices": [{"text": "mid", "finish_reason": "stop"}]}, "m")
    assert ChatCompletionResponse.model_validate(resp).choices[0].message.content == "mid"
    emb = openai.embeddings_request({"model": "m", "input": ["x"], "output_dimension": 64}, "up")
    assert emb == {"model": "up", "input": ["x"], "dimensions": 64}
    out = openai.embeddings_response({"data": [{"embedding": [0.1], "index": 0}], "usage": {"prompt_tokens": 2}}, "m")
    assert out["id"] and out["usage"] == {"prompt_tokens": 2, "completion_tokens": 0, "total_tokens": 2}


def test_sse_payloads_across_chunk_boundaries() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for piece in [b"data: {\"a\"", b": 1}\r\n\r\n: comment\n\nda", b"ta: line1\ndata: line2\n\n", b"data: [DONE]"]:
            yield piece

    async def collect() -> list[bytes]:
        return [p async for p in sse_payloads(chunks())]

    assert asyncio.run(collect()) == [b'{"a": 1}', b"line1\nline2", b"[DONE]"]


def test_usage_from_tail() -> None:
    tail = (b'data: {"choices":[]}\n\ndata: {"usage":{"prompt_tokens":3,"completion_tokens":9}}\n\n'
            b"data: [DONE]\n\n")
    assert usage_from_tail(tail) == (3, 9)
    assert usage_from_tail(b'tokens":1}}\n\ndata: [DONE]\n\n') is None  # a cut event is skipped
