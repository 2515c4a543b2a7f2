"""Reasoning on the real SmolLM2-135M (under a reasoning alias) through a live loopback server: both generation
phases really run (each is replayed as a plain request and must match), their usage adds up, and the official SDK
parses the answers in the native dialect and, through its models, in the LowCodeAPI dialect."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mistralai.client import Mistral
from mistralai.client import models as sdk

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.services.reasoning import ANSWER_INSTRUCTION, THINK_INSTRUCTION
from support import LiveServer, serving

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

MODEL = "magistral-small-latest"  # a reasoning family, served here by SmolLM2-135M
QUESTION = {"role": "user", "content": "Tom has 3 apples and buys 2 more. How many apples does he have?"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[tuple[LiveServer, str]]:
    entry = ModelEntry(id="smollm2-135m-instruct", aliases=[MODEL], asset="smollm2-135m-instruct-q4_1",
                       max_context_length=2048, parallel=2, capabilities=["completion_chat"])
    settings = Settings(data_dir=tmp_path_factory.mktemp("reasoning-real"), weights_path=weights_dir,
                        bootstrap_dev_token=False, models=[entry])
    with serving(settings, "real") as (server, _, token):
        yield server, token


@pytest.fixture(scope="module")
def mistral(stack: tuple[LiveServer, str]) -> Iterator[Mistral]:
    server, token = stack
    with Mistral(api_key=token, server_url=server.base_url, timeout_ms=120_000) as client:
        yield client


def test_both_phases_run_and_their_usage_adds_up(mistral: Mistral) -> None:
    res = mistral.chat.complete(model=MODEL, messages=[QUESTION], max_tokens=20, temperature=0,
                                reasoning_effort="high")
    think, text = res.choices[0].message.content
    assert isinstance(think, sdk.ThinkChunk) and isinstance(text, sdk.TextChunk)
    thinking = "".join(part.text for part in think.thinking)
    assert thinking.strip() and text.text.strip()
    # Phase 1 is the model under the thinking instruction, bounded by half of max_tokens (high effort) ...
    first = mistral.chat.complete(model=MODEL, max_tokens=10, temperature=0, reasoning_effort="none",
                                  messages=[{"role": "system", "content": THINK_INSTRUCTION}, QUESTION])
    assert first.choices[0].message.content == thinking
    # ... phase 2 answers with that thinking in its prompt, within what phase 1 left of max_tokens.
    note = ANSWER_INSTRUCTION.format(thinking=thinking.strip())
    second = mistral.chat.complete(model=MODEL, max_tokens=20 - first.usage.completion_tokens, temperature=0,
                                   reasoning_effort="none", messages=[{"role": "system", "content": note}, QUESTION])
    assert second.choices[0].message.content == text.text
    assert res.usage.prompt_tokens == first.usage.prompt_tokens
    assert res.usage.completion_tokens == first.usage.completion_tokens + second.usage.completion_tokens <= 20


def test_sdk_stream_thinks_then_answers(mistral: Mistral) -> None:
    kinds, last = [], None
    for event in mistral.chat.stream(model=MODEL, messages=[QUESTION], max_tokens=12, reasoning_effort="high"):
        content = event.data.choices[0].delta.content
        if isinstance(content, list):
            assert all(isinstance(c, sdk.ThinkChunk) for c in content)
            kinds.append("thinking")
        elif content:
            kinds.append("text")
        last = event.data
    assert "thinking" in kinds and kinds == sorted(kinds, key=lambda k: k != "thinking")
    assert last is not None and 0 < last.usage.completion_tokens <= 12
    plain = mistral.chat.complete(model=MODEL, messages=[QUESTION], max_tokens=6, reasoning_effort="none")
    assert isinstance(plain.choices[0].message.content, str) and plain.choices[0].message.content


@pytest.mark.parametrize("effort", ["high", "none"])
def test_lowcode_dialect(stack: tuple[LiveServer, str], effort: str) -> None:
    server, token = stack
    url = f"{server.base_url}/mistralai/v1/chat/completions"
    body = {"model": MODEL, "messages": [QUESTION], "max_tokens": 8, "reasoning_effort": effort}
    r = httpx.post(url, params={"api_token": token}, json=body, timeout=120)
    assert r.status_code == 200 and set(r.json()) == {"data"}
    content = sdk.ChatCompletionResponse.model_validate(r.json()["data"]).choices[0].message.content
    if effort == "high":
        assert [type(c) for c in content] == [sdk.ThinkChunk, sdk.TextChunk]
    else:
        assert isinstance(content, str)
    with httpx.stream("POST", url, params={"api_token": token}, json={**body, "stream": True}, timeout=120) as s:
        payloads = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
    assert payloads[-1] == "[DONE]"
    events = [sdk.CompletionChunk.model_validate(json.loads(p)) for p in payloads[:-1]]
    lists = [e for e in events if isinstance(e.choices[0].delta.content, list)]
    assert bool(lists) == (effort == "high")
    assert events[-1].usage is not None and events[-1].usage.completion_tokens > 0
