"""Reasoning answers parsed by their real consumers over real HTTP on loopback (fake engines, so it is fast): the
official SDK (mistralai 3.7.0) in the native dialect, the SDK's models on the LowCodeAPI dialect's unwrapped
bodies and events, and the project's own client. ``reasoning_effort`` high and none, streamed and not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mistralai.client import Mistral
from mistralai.client import models as sdk

from mistral_gateway.client import Client
from mistral_gateway.config import ModelEntry, Settings

pytestmark = pytest.mark.e2e

MODEL = "magistral-small-latest"
MODELS = [ModelEntry(id="fake-chat", aliases=[MODEL, "mistral-small-latest"], engine="fake",
                     capabilities=["completion_chat"])]
ASK = [{"role": "user", "content": "What is 6 times 7?"}]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:  # overrides conftest's: a fake model under a reasoning alias
    return Settings(data_dir=tmp_path / "data", bootstrap_dev_token=False, models=MODELS)


@pytest.fixture
def mistral(live_server: Any, token: str) -> Iterator[Mistral]:
    with Mistral(api_key=token, server_url=live_server.base_url, timeout_ms=20_000) as client:
        yield client


def check_reasoning_content(content: Any) -> tuple[str, str]:
    """SDK-parsed content of a reasoning answer: a ThinkChunk, then a TextChunk. Returns (thinking, text)."""
    assert isinstance(content, list) and len(content) == 2
    think, text = content
    assert isinstance(think, sdk.ThinkChunk) and isinstance(text, sdk.TextChunk)
    assert all(isinstance(part, sdk.TextChunk) for part in think.thinking)
    thinking = "".join(part.text for part in think.thinking)
    assert thinking and text.text
    return thinking, text.text


def check_stream(events: list[Any], reasoning: bool) -> tuple[str, str]:
    """SDK-parsed stream events: thinking deltas (lists holding one ThinkChunk) strictly before text deltas."""
    thinking, text, seen_text = [], [], False
    for event in events:
        content = event.choices[0].delta.content
        if isinstance(content, list):
            assert reasoning and not seen_text
            (chunk,) = content
            assert isinstance(chunk, sdk.ThinkChunk)
            thinking.extend(part.text for part in chunk.thinking)
        elif content:
            seen_text = True
            text.append(content)
    assert events[-1].choices[0].finish_reason == "stop" and events[-1].usage.completion_tokens > 0
    return "".join(thinking), "".join(text)


def test_sdk_complete_high_and_none(mistral: Mistral) -> None:
    high = mistral.chat.complete(model=MODEL, messages=ASK, max_tokens=20, reasoning_effort="high", random_seed=1)
    thinking, text = check_reasoning_content(high.choices[0].message.content)
    assert high.usage.total_tokens == high.usage.prompt_tokens + high.usage.completion_tokens
    assert len(thinking.split()) + len(text.split()) == high.usage.completion_tokens  # the fake: a token a word
    none = mistral.chat.complete(model=MODEL, messages=ASK, max_tokens=20, reasoning_effort="none")
    assert isinstance(none.choices[0].message.content, str) and none.choices[0].message.content


def test_sdk_stream_high_and_none(mistral: Mistral) -> None:
    body: dict[str, Any] = {"model": MODEL, "messages": ASK, "max_tokens": 20, "random_seed": 2}
    whole = mistral.chat.complete(**body, reasoning_effort="high")
    streamed = check_stream([e.data for e in mistral.chat.stream(**body, reasoning_effort="high")], True)
    assert streamed == check_reasoning_content(whole.choices[0].message.content)
    thinking, text = check_stream([e.data for e in mistral.chat.stream(**body, reasoning_effort="none")], False)
    assert thinking == "" and text


def test_sdk_multi_turn_sends_the_answer_back(mistral: Mistral) -> None:
    """Mistral's own multi-turn example: the whole assistant message, ThinkChunk included, goes back."""
    messages: list[Any] = [sdk.UserMessage(content="What is 17 * 23?")]
    for follow_up in ("Now multiply that by 3.", "And subtract 100."):
        res = mistral.chat.complete(model=MODEL, messages=messages, max_tokens=20, reasoning_effort="high")
        check_reasoning_content(res.choices[0].message.content)
        messages += [res.choices[0].message, sdk.UserMessage(content=follow_up)]
    check_reasoning_content(mistral.chat.complete(model=MODEL, messages=messages, max_tokens=20,
                                                  reasoning_effort="high").choices[0].message.content)


def test_non_reasoning_model_ignores_the_effort(mistral: Mistral) -> None:
    res = mistral.chat.complete(model="mistral-small-latest", messages=ASK, max_tokens=20, reasoning_effort="high")
    assert isinstance(res.choices[0].message.content, str)


@pytest.mark.parametrize("effort", ["high", "none"])
def test_lowcode_dialect_bodies_and_events_parse_with_the_sdk(live_server: Any, token: str, effort: str) -> None:
    url = f"{live_server.base_url}/mistralai/v1/chat/completions"
    body = {"model": MODEL, "messages": ASK, "max_tokens": 20, "reasoning_effort": effort, "random_seed": 4}
    r = httpx.post(url, params={"api_token": token}, json=body, timeout=20)
    assert r.status_code == 200 and set(r.json()) == {"data"}
    whole = sdk.ChatCompletionResponse.model_validate(r.json()["data"])
    with httpx.stream("POST", url, params={"api_token": token}, json={**body, "stream": True}, timeout=20) as s:
        payloads = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
    assert payloads[-1] == "[DONE]"
    events = [sdk.CompletionChunk.model_validate(json.loads(p)) for p in payloads[:-1]]  # not enveloped
    if effort == "high":
        assert check_stream(events, True) == check_reasoning_content(whole.choices[0].message.content)
    else:
        assert check_stream(events, False)[1] == whole.choices[0].message.content


def test_project_client_reads_thinking(live_server: Any, token: str, tmp_path: Path) -> None:
    with Client(live_server.base_url, token, cache_path=tmp_path / "formats.json") as client:
        reply = client.chat.complete(model=MODEL, messages=ASK, max_tokens=20, reasoning_effort="high",
                                     random_seed=5)
        message = reply.choices[0].message
        assert [c.type for c in message.content] == ["thinking", "text"]
        chunks = list(client.chat.stream(model=MODEL, messages=ASK, max_tokens=20, reasoning_effort="high",
                                         random_seed=5))
        assert "".join(c.choices[0].delta.thinking for c in chunks) == message.thinking and message.thinking
        assert "".join(c.choices[0].delta.text for c in chunks) == message.text and message.text
        plain = client.chat.complete(model=MODEL, messages=ASK, max_tokens=20, reasoning_effort="none")
        assert isinstance(plain.choices[0].message.content, str) and plain.choices[0].message.text
