"""Chat and FIM completions over HTTP with the deterministic fake engine: shapes, SSE framing, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.http.app import create_app
from mistral_gateway.services.container import build_services

FIM = "<|fim_prefix|>{prompt}<|fim_suffix|>{suffix}<|fim_middle|>"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    settings = Settings(data_dir=tmp_path / "data", bootstrap_dev_token=False, models=[
        ModelEntry(id="fake-chat", aliases=["mistral-small-latest"], engine="fake", max_context_length=64,
                   capabilities=["completion_chat", "completion_fim", "function_calling"], fim_template=FIM),
        ModelEntry(id="fake-plain", engine="fake", capabilities=["completion_chat"]),
        ModelEntry(id="fake-embed", engine="fake", capabilities=[]),
    ])
    services = build_services(settings)
    token, _ = services.tokens.create("t")
    with TestClient(create_app(services=services)) as client:
        yield client, token
    services.close()


def chat(client: TestClient, token: str, body: dict, lowcode: bool = False):  # type: ignore[no-untyped-def]
    if lowcode:
        return client.post("/mistralai/v1/chat/completions", params={"api_token": token}, json=body)
    return client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {token}"}, json=body)


def events(text: str) -> list[str]:
    return [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]


BODY = {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 5}


def test_completion_shape(env: tuple[TestClient, str]) -> None:
    client, token = env
    r = chat(client, token, BODY)
    assert r.status_code == 200
    body = r.json()
    assert set(body) >= {"id", "object", "model", "usage", "created", "choices"}
    assert body["object"] == "chat.completion" and body["model"] == "mistral-small-latest"
    assert len(body["id"]) == 32 and int(body["id"], 16) >= 0
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_lowcode_envelope(env: tuple[TestClient, str]) -> None:
    client, token = env
    native = chat(client, token, {**BODY, "random_seed": 7}).json()
    wrapped = chat(client, token, {**BODY, "random_seed": 7}, lowcode=True).json()
    assert wrapped["data"]["choices"] == native["choices"]


def test_seed_is_deterministic(env: tuple[TestClient, str]) -> None:
    client, token = env
    a = chat(client, token, {**BODY, "random_seed": 11}).json()["choices"][0]["message"]["content"]
    b = chat(client, token, {**BODY, "random_seed": 11}).json()["choices"][0]["message"]["content"]
    assert a == b


def test_n_choices_bill_prompt_once(env: tuple[TestClient, str]) -> None:
    client, token = env
    body = chat(client, token, {**BODY, "n": 3, "random_seed": 1}).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    single = chat(client, token, {**BODY, "random_seed": 1}).json()
    assert body["usage"]["prompt_tokens"] == single["usage"]["prompt_tokens"]


@pytest.mark.parametrize("lowcode", [False, True])
def test_stream_chunks_and_done(env: tuple[TestClient, str], lowcode: bool) -> None:
    client, token = env
    r = chat(client, token, {**BODY, "stream": True}, lowcode=lowcode)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    data = events(r.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert "data" not in chunks[0]  # SSE is never wrapped, even in the LowCodeAPI dialect
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "tool_calls": None}
    assert chunks[0]["choices"][0]["finish_reason"] is None
    assert {c["id"] for c in chunks} == {chunks[0]["id"]} and {c["created"] for c in chunks} == {chunks[0]["created"]}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["usage"]["total_tokens"] > 0
    assert all("usage" not in c for c in chunks[:-1])  # optional and not nullable in the spec
    streamed = "".join(c["choices"][0]["delta"]["content"] or "" for c in chunks)
    whole = chat(client, token, {**BODY}).json()["choices"][0]["message"]["content"]
    assert streamed == whole


def test_context_overflow_is_400_before_streaming(env: tuple[TestClient, str]) -> None:
    client, token = env
    long = {**BODY, "messages": [{"role": "user", "content": "word " * 200}], "stream": True}
    r = chat(client, token, long)
    assert r.status_code == 400
    assert r.json()["code"] == "CONTEXT_LENGTH_EXCEEDED"
    r = chat(client, token, {**long, "stream": False}, lowcode=True)
    assert r.status_code == 400
    assert r.json()["data"]["error"]["code"] == "CONTEXT_LENGTH_EXCEEDED"


def test_max_tokens_plus_prompt_over_context(env: tuple[TestClient, str]) -> None:
    client, token = env
    r = chat(client, token, {**BODY, "max_tokens": 1000})
    assert r.status_code == 400
    assert "context window" in r.json()["message"]


def test_json_schema_output_validates(env: tuple[TestClient, str]) -> None:
    client, token = env
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}},
              "required": ["city", "n"]}
    body = {**BODY, "max_tokens": 50,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}
    content = chat(client, token, body).json()["choices"][0]["message"]["content"]
    value = json.loads(content)
    assert isinstance(value["city"], str) and isinstance(value["n"], int)


def test_validation_errors(env: tuple[TestClient, str]) -> None:
    client, token = env
    r = chat(client, token, {"model": "mistral-small-latest", "messages": []})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][:2] == ["body", "messages"]
    r = chat(client, token, {**BODY, "temperature": "hot"})
    assert r.status_code == 422
    r = chat(client, token, {**BODY, "messages": [{"role": "assistant", "content": "x", "prefix": True},
                                                  {"role": "user", "content": "y"}]})
    assert r.status_code == 422
    r = chat(client, token, {**BODY, "response_format": {"type": "json_schema"}})
    assert r.status_code == 422


def test_unknown_fields_are_ignored(env: tuple[TestClient, str]) -> None:
    client, token = env
    r = chat(client, token, {**BODY, "service_tier": "auto", "top_k": 5, "logprobs": False})
    assert r.status_code == 200


def test_unknown_model_and_capability(env: tuple[TestClient, str]) -> None:
    client, token = env
    r = chat(client, token, {**BODY, "model": "nope"})
    assert r.status_code == 404 and r.json()["code"] == "MODEL_NOT_FOUND"
    r = chat(client, token, {**BODY, "model": "fake-embed"})
    assert r.status_code == 400 and "completion_chat" in r.json()["message"]


def test_images_need_vision(env: tuple[TestClient, str]) -> None:
    client, token = env
    content = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": "https://x/y.png"}]
    r = chat(client, token, {**BODY, "messages": [{"role": "user", "content": content}]})
    assert r.status_code == 400 and "vision" in r.json()["message"]


def test_text_chunks_are_joined(env: tuple[TestClient, str]) -> None:
    client, token = env
    content = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]
    a = chat(client, token, {**BODY, "random_seed": 2, "messages": [{"role": "user", "content": content}]}).json()
    b = chat(client, token, {**BODY, "random_seed": 2}).json()
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]


WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}


@pytest.mark.parametrize("choice", ["any", "required", {"type": "function", "function": {"name": "get_weather"}}])
def test_forced_tool_call(env: tuple[TestClient, str], choice: object) -> None:
    client, token = env
    body = chat(client, token, {**BODY, "max_tokens": 40, "tools": [WEATHER], "tool_choice": choice}).json()
    choice0 = body["choices"][0]
    assert choice0["finish_reason"] == "tool_calls"
    assert choice0["message"]["content"] == ""
    call = choice0["message"]["tool_calls"][0]
    assert len(call["id"]) == 9 and call["id"].isalnum()
    assert call["function"]["name"] == "get_weather"
    assert isinstance(json.loads(call["function"]["arguments"])["city"], str)


def test_auto_tool_call_detected_and_regenerated_under_the_grammar(env: tuple[TestClient, str]) -> None:
    client, token = env
    messages = [{"role": "user", "content": "please call the weather tool"}]
    body = chat(client, token, {**BODY, "max_tokens": 40, "messages": messages, "tools": [WEATHER]}).json()
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_auto_without_a_call_is_plain_content(env: tuple[TestClient, str]) -> None:
    client, token = env
    body = chat(client, token, {**BODY, "tools": [WEATHER]}).json()
    assert body["choices"][0]["finish_reason"] in ("stop", "length")
    assert body["choices"][0]["message"]["content"] and body["choices"][0]["message"]["tool_calls"] is None


def test_tool_call_streams_whole_calls(env: tuple[TestClient, str]) -> None:
    client, token = env
    r = chat(client, token, {**BODY, "max_tokens": 40, "tools": [WEATHER], "tool_choice": "any", "stream": True})
    chunks = [json.loads(d) for d in events(r.text)[:-1]]
    calls = [c for c in chunks if c["choices"][0]["delta"].get("tool_calls")]
    assert len(calls) == 1 and calls[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls" and chunks[-1]["usage"]["total_tokens"] > 0


def test_tool_round_trip_history_is_accepted(env: tuple[TestClient, str]) -> None:
    client, token = env
    history = [{"role": "user", "content": "weather in Paris?"},
               {"role": "assistant", "content": "", "tool_calls": [
                   {"id": "D681PevKs", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
               {"role": "tool", "tool_call_id": "D681PevKs", "name": "get_weather", "content": "sunny, 21C"}]
    r = chat(client, token, {**BODY, "messages": history, "tools": [WEATHER]})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]


def test_tool_choice_must_name_a_declared_tool(env: tuple[TestClient, str]) -> None:
    client, token = env
    r = chat(client, token, {**BODY, "tools": [WEATHER],
                             "tool_choice": {"type": "function", "function": {"name": "nope"}}})
    assert r.status_code == 400 and r.json()["param"] == "tool_choice"


def test_tool_choice_none_ignores_tools(env: tuple[TestClient, str]) -> None:
    client, token = env
    r = chat(client, token, {**BODY, "tools": [WEATHER], "tool_choice": "none"})
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] != "tool_calls"


def test_malformed_json_is_400(env: tuple[TestClient, str]) -> None:
    client, token = env
    r = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {token}",
                                                     "Content-Type": "application/json"}, content=b"{not json")
    assert r.status_code == 400 and r.json()["code"] == "MALFORMED_JSON"


def test_fim(env: tuple[TestClient, str]) -> None:
    client, token = env
    headers = {"Authorization": f"Bearer {token}"}
    r = client.post("/v1/fim/completions", headers=headers,
                    json={"model": "fake-chat", "prompt": "def f(", "suffix": "return x", "max_tokens": 4})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
    r = client.post("/v1/fim/completions", headers=headers,
                    json={"model": "fake-chat", "prompt": "a", "suffix": "b", "max_tokens": 4, "stream": True})
    assert events(r.text)[-1] == "[DONE]"
    r = client.post("/v1/fim/completions", headers=headers, json={"model": "fake-embed", "prompt": "a"})
    assert r.status_code == 400 and "completion_fim" in r.json()["message"]


def test_tools_need_the_function_calling_capability(env: tuple[TestClient, str]) -> None:
    client, token = env
    r = chat(client, token, {**BODY, "model": "fake-plain", "tools": [WEATHER]})
    assert r.status_code == 400 and "function_calling" in r.json()["message"]


def test_message_count_is_capped(env: tuple[TestClient, str]) -> None:
    """Issue 9: 100,000 one-word messages (3.8 MB) kept llama.cpp's template and tokenizer busy for 79 s, then 500."""
    client, token = env
    many = [{"role": "user", "content": "word"}] * 2049
    r = chat(client, token, {"model": "mistral-small-latest", "messages": many})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", "messages"]
    r = chat(client, token, {"model": "mistral-small-latest", "messages": many[:2048], "max_tokens": 1})
    assert r.status_code == 400 and r.json()["code"] == "CONTEXT_LENGTH_EXCEEDED"  # counted, not capped
