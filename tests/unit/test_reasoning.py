"""Reasoning with the fake engine: thinking chunks (non-stream and stream), the two phases and their budgets, usage,
tools and JSON after thinking, multi-turn input carrying thinking, and natively thinking models parsed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mistralai.client import models as sdk

from mistral_gateway.config import ModelEntry, ReasoningSettings, Settings
from mistral_gateway.engines.base import Delta, SamplingParams
from mistral_gateway.engines.fake import FakeTextEngine
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.errors import BadRequest
from mistral_gateway.protocol.chat import ChatCompletionRequest, OutputTextChunk, OutputThinkChunk
from mistral_gateway.services.chat import ChatService
from mistral_gateway.services.models import ModelCatalog
from mistral_gateway.services.reasoning import THINK_INSTRUCTION

ASK = [{"role": "user", "content": "What is 6 times 7?"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


class Recording(FakeTextEngine):
    """The fake engine, remembering each generation's prompt and parameters, and answering a natively thinking
    model's way (``<think>`` tags cut across pieces) when ``native`` is set."""

    def __init__(self, native: str | None = None) -> None:
        super().__init__(context_length=1024)
        self.calls: list[tuple[str, SamplingParams]] = []
        self.native = native
        self.open = 0  # generations started and not yet closed

    async def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[Delta]:
        self.calls.append((prompt, params))
        self.open += 1
        try:
            if self.native is None or params.grammar or params.json_schema or params.stop:
                async for delta in super().stream(prompt, params):
                    yield delta
                return
            pieces = [self.native[i:i + 3] for i in range(0, len(self.native), 3)]
            for piece in pieces:
                yield Delta(piece)
            yield Delta("", "stop", len(prompt.split()), len(pieces))
        finally:
            self.open -= 1


def make_chat(tmp_path: Path, engine: Recording, *, native: bool = False,
              reasoning: ReasoningSettings | None = None) -> ChatService:
    entries = [ModelEntry(id="m", aliases=["magistral-small-latest", "mistral-medium-3-5", "mistral-small-latest"],
                          engine="fake", capabilities=["completion_chat", "function_calling"],
                          native_thinking=native)]
    manager = EngineManager(Settings(data_dir=tmp_path, models=entries), loaders={("fake", "text"): lambda *_: engine})
    return ChatService(ModelCatalog(entries), manager, clock=lambda: 1000.0, reasoning=reasoning)


@pytest.fixture
def engine() -> Recording:
    return Recording()


@pytest.fixture
def chat(tmp_path: Path, engine: Recording) -> ChatService:
    return make_chat(tmp_path, engine)


def req(model: str = "magistral-small-latest", **kw: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": model, "messages": ASK, "max_tokens": 20, **kw})


def complete(chat: ChatService, request: ChatCompletionRequest) -> Any:
    return asyncio.run(chat.complete(request))


def stream(chat: ChatService, request: ChatCompletionRequest) -> list[Any]:
    async def run() -> list[Any]:
        return [c async for c in await chat.stream(request.model_copy(update={"stream": True}))]
    return asyncio.run(run())


def plain(engine: FakeTextEngine, prompt: str, params: SamplingParams) -> Any:
    """Replay one generation on a fresh fake (deterministic), without recording it."""
    return asyncio.run(FakeTextEngine(engine.context_length).complete(prompt, params))


def test_high_effort_thinks_then_answers_with_the_thinking_in_its_prompt(chat: ChatService, engine: Recording) -> None:
    res = complete(chat, req(reasoning_effort="high"))
    think, text = res.choices[0].message.content
    assert isinstance(think, OutputThinkChunk) and isinstance(text, OutputTextChunk)
    (think_prompt, think_params), (answer_prompt, answer_params) = engine.calls
    assert THINK_INSTRUCTION in think_prompt and "What is 6 times 7?" in think_prompt
    first = plain(engine, think_prompt, think_params)  # the fake is deterministic: replay each phase
    second = plain(engine, answer_prompt, answer_params)
    assert think.thinking[0].text == first.text and first.text
    assert first.text in answer_prompt and THINK_INSTRUCTION not in answer_prompt
    assert text.text == second.text and second.text
    assert res.choices[0].message.thinking == first.text and res.choices[0].message.text == second.text
    # budgets: high is half of max_tokens; the answer gets what the thinking left
    assert think_params.max_tokens == 10 and answer_params.max_tokens == 20 - first.completion_tokens
    # usage: the first phase's prompt, and both phases' completions
    assert res.usage.prompt_tokens == first.prompt_tokens
    assert res.usage.completion_tokens == first.completion_tokens + second.completion_tokens
    assert res.usage.total_tokens == res.usage.prompt_tokens + res.usage.completion_tokens


@pytest.mark.parametrize(("effort", "budget"), [("minimal", 4), ("low", 8), ("medium", 14), ("high", 20),
                                                  ("xhigh", 24), ("max", 28)])
def test_effort_levels_map_to_budgets(chat: ChatService, engine: Recording, effort: str, budget: int) -> None:
    complete(chat, req(reasoning_effort=effort, max_tokens=40))
    assert engine.calls[0][1].max_tokens == budget


def test_budget_is_configurable_and_has_a_default_without_max_tokens(tmp_path: Path, engine: Recording) -> None:
    chat = make_chat(tmp_path, engine, reasoning=ReasoningSettings(budget_share={"high": 0.25},
                                                                   tokens_without_max=200))
    complete(chat, req(reasoning_effort="high", max_tokens=40))
    assert engine.calls[0][1].max_tokens == 10
    complete(chat, req(reasoning_effort="high", max_tokens=None))
    assert engine.calls[2][1].max_tokens == 50 and engine.calls[3][1].max_tokens is None
    with pytest.raises(ValueError, match="between 0 and 1"):
        ReasoningSettings(budget_share={"high": 1.5})


def test_none_effort_and_non_reasoning_models_answer_a_plain_string(chat: ChatService, engine: Recording) -> None:
    for request in (req(reasoning_effort="none"), req(model="m", reasoning_effort="high"),
                    req(model="mistral-small-latest", prompt_mode="reasoning"),
                    req(model="mistral-medium-3-5"), req(model="mistral-medium-3-5", prompt_mode=None)):
        engine.calls.clear()
        res = complete(chat, request)
        assert isinstance(res.choices[0].message.content, str) and res.choices[0].message.content
        assert len(engine.calls) == 1 and THINK_INSTRUCTION not in engine.calls[0][0]


@pytest.mark.parametrize("kw", [{"prompt_mode": "reasoning"}, {"reasoning_effort": "low"}, {}])
def test_what_turns_thinking_on(chat: ChatService, kw: dict[str, Any]) -> None:
    model = "magistral-small-latest" if not kw else "mistral-medium-3-5"  # magistral always thinks
    content = complete(chat, req(model=model, **kw)).choices[0].message.content
    assert [c.type for c in content] == ["thinking", "text"]


def test_stream_sends_thinking_deltas_then_text_deltas(chat: ChatService, engine: Recording) -> None:
    whole = complete(chat, req(reasoning_effort="high", random_seed=3))
    chunks = stream(chat, req(reasoning_effort="high", random_seed=3))
    contents = [c.choices[0].delta.content for c in chunks]
    assert contents[0] == "" and chunks[0].choices[0].delta.role == "assistant"
    kinds = ["thinking" if isinstance(c, list) else "text" for c in contents[1:-1]]
    assert kinds and kinds == sorted(kinds, key=lambda k: k != "thinking") and "thinking" in kinds
    for content in contents[1:-1]:
        if isinstance(content, list):
            assert len(content) == 1 and isinstance(content[0], OutputThinkChunk)
    assert "".join(c.choices[0].delta.thinking for c in chunks) == whole.choices[0].message.thinking
    assert "".join(c.choices[0].delta.text for c in chunks) == whole.choices[0].message.text
    assert chunks[-1].usage == whole.usage and chunks[-1].choices[0].finish_reason == "stop"
    raw = json.loads(chunks[1].model_dump_json())["choices"][0]["delta"]["content"]
    assert raw == [{"type": "thinking", "thinking": [{"type": "text", "text": raw[0]["thinking"][0]["text"]}]}]


def test_a_caller_gone_during_the_thinking_stops_it(chat: ChatService, engine: Recording) -> None:
    async def run() -> None:
        chunks = await chat.stream(req(reasoning_effort="high", max_tokens=40, min_tokens=40, stream=True))
        assert (await anext(chunks)).choices[0].delta.role == "assistant"
        assert isinstance((await anext(chunks)).choices[0].delta.content, list)  # thinking under way
        assert engine.open == 1
        await chunks.aclose()
        del chunks  # as the HTTP layer drops a finished response: the generators chained behind it are closed
        for _ in range(5):
            await asyncio.sleep(0)
        assert engine.open == 0 and len(engine.calls) == 1  # stopped, and no answer phase was started

    asyncio.run(run())


def test_n_choices_each_think_and_the_prompt_is_billed_once(chat: ChatService, engine: Recording) -> None:
    res = complete(chat, req(reasoning_effort="high", n=2, random_seed=1))
    assert [[c.type for c in ch.message.content] for ch in res.choices] == [["thinking", "text"]] * 2
    assert len(engine.calls) == 4
    first = plain(engine, *engine.calls[0])
    assert res.usage.prompt_tokens == first.prompt_tokens
    assert res.usage.completion_tokens == sum(plain(engine, *c).completion_tokens for c in engine.calls)


def test_thinking_can_use_the_whole_budget(chat: ChatService, engine: Recording) -> None:
    res = complete(chat, req(reasoning_effort="high", max_tokens=1))  # half of 1 token: no thinking phase
    assert [c.type for c in res.choices[0].message.content] == ["thinking", "text"]
    assert res.choices[0].message.thinking == "" and len(engine.calls) == 1
    res = complete(chat, req(reasoning_effort="max", max_tokens=2, min_tokens=2))
    assert res.usage.completion_tokens <= 2


def test_forced_tool_call_after_thinking(chat: ChatService, engine: Recording) -> None:
    res = complete(chat, req(reasoning_effort="high", max_tokens=60, tools=[WEATHER], tool_choice="any"))
    message = res.choices[0].message
    assert res.choices[0].finish_reason == "tool_calls"
    assert [c.type for c in message.content] == ["thinking"] and message.thinking
    assert message.tool_calls[0].function["name"] == "get_weather"
    assert engine.calls[0][1].grammar is None and engine.calls[1][1].grammar is not None  # free thinking first
    # the whole assistant message goes back with the tool's result: its thinking-only content is accepted
    call = message.tool_calls[0]
    history = [*ASK, json.loads(message.model_dump_json()),
               {"role": "tool", "tool_call_id": call.id, "name": "get_weather", "content": "sunny"}]
    res = complete(chat, req(reasoning_effort="none", tools=[WEATHER], tool_choice="none", messages=history))
    assert isinstance(res.choices[0].message.content, str)
    assert "<assistant> \n<tool> sunny" in engine.calls[-1][0] and message.thinking not in engine.calls[-1][0]


def test_json_schema_answer_after_thinking(chat: ChatService, engine: Recording) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    res = complete(chat, req(reasoning_effort="high", max_tokens=40, response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": schema}}))
    assert json.loads(res.choices[0].message.text) == {"n": 0} and res.choices[0].message.thinking
    assert engine.calls[0][1].json_schema is None and engine.calls[1][1].json_schema == schema


def test_assistant_prefix_is_continued_by_the_answer_not_the_thinking(chat: ChatService, engine: Recording) -> None:
    complete(chat, req(reasoning_effort="high", messages=[*ASK, {"role": "assistant", "content": "The answer",
                                                                 "prefix": True}]))
    (think_prompt, _), (answer_prompt, _) = engine.calls
    assert "The answer" not in think_prompt and answer_prompt.endswith("<assistant> The answer")


THOUGHT = {"type": "thinking", "thinking": [{"type": "text", "text": "six sevens are forty-two"}]}


def test_earlier_thinking_is_accepted_back_and_dropped(chat: ChatService, engine: Recording) -> None:
    history = [*ASK, {"role": "assistant", "content": [THOUGHT, {"type": "text", "text": "42."}]},
               {"role": "user", "content": "And times 2?"}]
    complete(chat, req(messages=history, reasoning_effort="none"))
    assert "<assistant> 42.\n" in engine.calls[0][0] and "forty-two" not in engine.calls[0][0]


def test_the_sdks_own_messages_validate(chat: ChatService, engine: Recording) -> None:
    """What mistralai 3.7.0 sends back when a reasoning answer is appended to the history."""
    answer = sdk.AssistantMessage(content=[sdk.ThinkChunk(thinking=[sdk.TextChunk(text="hmm")], closed=True),
                                           sdk.TextChunk(text="42.")])
    body = sdk.ChatCompletionRequest(model="magistral-small-latest", max_tokens=20, reasoning_effort="high",
                                     messages=[sdk.UserMessage(content="6*7?"), answer,
                                               sdk.UserMessage(content="And times 2?")]).model_dump(by_alias=True)
    res = complete(chat, ChatCompletionRequest.model_validate(body))
    assert [c.type for c in res.choices[0].message.content] == ["thinking", "text"]
    assert "<assistant> 42.\n" in engine.calls[-1][0]


def test_system_thinking_is_folded_and_user_or_tool_thinking_refused(chat: ChatService, engine: Recording) -> None:
    system = {"role": "system", "content": [{"type": "text", "text": "Think like this: "}, THOUGHT]}
    complete(chat, req(messages=[system, *ASK], reasoning_effort="none"))
    assert "Think like this: six sevens are forty-two" in engine.calls[0][0]
    for message in ({"role": "user", "content": [THOUGHT]},
                    {"role": "tool", "tool_call_id": "abcdefghi", "content": [THOUGHT]}):
        with pytest.raises(BadRequest, match="only accepted in assistant and system messages") as exc:
            complete(chat, req(messages=[*ASK, message]))
        assert exc.value.param == "messages"


NATIVE = "<think>\nsix times seven\nis 42\n</think>\n\nIt is 42."


def test_native_thinker_is_parsed(tmp_path: Path) -> None:
    engine = Recording(native=NATIVE)
    chat = make_chat(tmp_path, engine, native=True)
    message = complete(chat, req(reasoning_effort="high")).choices[0].message
    assert (message.thinking, message.text) == ("six times seven\nis 42", "It is 42.")
    assert len(engine.calls) == 1 and THINK_INSTRUCTION not in engine.calls[0][0]
    chunks = stream(chat, req(reasoning_effort="high"))
    assert "".join(c.choices[0].delta.thinking for c in chunks) == "six times seven\nis 42"
    assert chunks[-1].usage.completion_tokens == len(range(0, len(NATIVE), 3))
    for request in (req(reasoning_effort="none"), req(model="m")):  # the thinking is parsed away
        assert complete(chat, request).choices[0].message.content == "It is 42."


def test_native_thinker_under_a_constraint_thinks_first(tmp_path: Path) -> None:
    engine = Recording(native=NATIVE)
    chat = make_chat(tmp_path, engine, native=True)
    res = complete(chat, req(reasoning_effort="high", max_tokens=40, response_format={"type": "json_object"}))
    (think_prompt, think_params), (answer_prompt, answer_params) = engine.calls
    assert think_prompt.endswith("<think>\n") and think_params.stop == ("</think>",)
    thinking = res.choices[0].message.thinking
    assert answer_prompt == f"{think_prompt}{thinking}\n</think>\n\n"
    assert answer_params.json_schema == {"type": "object"}
    assert json.loads(res.choices[0].message.text) == {}
    history = [*ASK, {"role": "assistant", "content": [THOUGHT, {"type": "text", "text": "42."}]}, *ASK]
    complete(chat, req(messages=history, reasoning_effort="none"))  # native templates get the thinking back
    assert "<think>\nsix sevens are forty-two\n</think>\n\n42." in engine.calls[-1][0]
