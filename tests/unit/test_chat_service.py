"""ChatService and FimService with the fake engine: prompts, safe prompt, sampling defaults, errors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import EngineBusy, SamplingParams
from mistral_gateway.engines.fake import FakeTextEngine
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.errors import BadRequest, ServiceUnavailable
from mistral_gateway.protocol.chat import ChatCompletionRequest, FIMCompletionRequest
from mistral_gateway.services.chat import SAFE_PROMPT, ChatService
from mistral_gateway.services.fim import FimService
from mistral_gateway.services.models import ModelCatalog

FIM = "<PRE>{prompt}<SUF>{suffix}<MID>"


class Recording(FakeTextEngine):
    def __init__(self) -> None:
        super().__init__(context_length=512)
        self.params: list[SamplingParams] = []
        self.rendered: list[Any] = []

    async def render(self, messages: Any, tools: Any = None, *, continue_last: bool = False) -> str:
        self.rendered.append((list(messages), continue_last))
        return await super().render(messages, tools, continue_last=continue_last)

    def stream(self, prompt: str, params: SamplingParams) -> Any:
        self.params.append(params)
        return super().stream(prompt, params)


@pytest.fixture
def engine() -> Recording:
    return Recording()


@pytest.fixture
def services(tmp_path: Path, engine: Recording) -> tuple[ChatService, FimService]:
    entries = [ModelEntry(id="m", engine="fake", capabilities=["completion_chat", "completion_fim"],
                          fim_template=FIM, default_model_temperature=0.3),
               ModelEntry(id="plain", engine="fake", capabilities=["completion_chat"])]
    settings = Settings(data_dir=tmp_path, models=entries)
    manager = EngineManager(settings, loaders={("fake", "text"): lambda *_: engine})
    catalog = ModelCatalog(entries)
    return ChatService(catalog, manager, clock=lambda: 1000.0), FimService(catalog, manager, clock=lambda: 1000.0)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def req(**kw: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                                 "max_tokens": 8, **kw})


def test_safe_prompt_prepends_system_message(services: Any, engine: Recording) -> None:
    chat, _ = services
    run(chat.complete(req(safe_prompt=True)))
    messages, _ = engine.rendered[-1]
    assert messages[0].role == "system" and messages[0].content == SAFE_PROMPT
    run(chat.complete(req(safe_prompt=True, messages=[{"role": "system", "content": "Be terse."},
                                                      {"role": "user", "content": "hi"}])))
    messages, _ = engine.rendered[-1]
    assert [m.role for m in messages] == ["system", "user"]
    assert messages[0].content.startswith(SAFE_PROMPT) and messages[0].content.endswith("Be terse.")


def test_temperature_defaults_to_the_model_card(services: Any, engine: Recording) -> None:
    chat, _ = services
    run(chat.complete(req()))
    assert engine.params[-1].temperature == 0.3
    run(chat.complete(req(temperature=0)))
    assert engine.params[-1].temperature == 0


def test_sampling_fields_reach_the_engine(services: Any, engine: Recording) -> None:
    chat, _ = services
    run(chat.complete(req(top_p=0.5, stop="END", random_seed=9, presence_penalty=0.5, frequency_penalty=-0.5,
                          min_tokens=2)))
    p = engine.params[-1]
    assert (p.top_p, p.stop, p.seed, p.presence_penalty, p.frequency_penalty, p.min_tokens, p.max_tokens) == \
        (0.5, ("END",), 9, 0.5, -0.5, 2, 8)


def test_n_choices_use_distinct_reproducible_seeds(services: Any, engine: Recording) -> None:
    chat, _ = services
    run(chat.complete(req(n=3, random_seed=10)))
    assert [p.seed for p in engine.params[-3:]] == [10, 11, 12]


def test_json_modes(services: Any, engine: Recording) -> None:
    chat, _ = services
    run(chat.complete(req(response_format={"type": "json_object"})))
    assert engine.params[-1].json_schema == {"type": "object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    out = run(chat.complete(req(response_format={"type": "json_schema",
                                                  "json_schema": {"name": "s", "schema": schema}})))
    assert engine.params[-1].json_schema == schema
    assert out.choices[0].message.content == '{"a": 0}'


def test_prefix_continues_the_last_message(services: Any, engine: Recording) -> None:
    chat, _ = services
    run(chat.complete(req(messages=[{"role": "user", "content": "hi"},
                                    {"role": "assistant", "content": "Sure:", "prefix": True}])))
    messages, continue_last = engine.rendered[-1]
    assert continue_last and messages[-1].role == "assistant" and messages[-1].content == "Sure:"


def test_assistant_tool_calls_and_tool_messages_are_passed_on(services: Any, engine: Recording) -> None:
    chat, _ = services
    history = [{"role": "user", "content": "weather?"},
               {"role": "assistant", "content": "", "tool_calls": [
                   {"id": "abcDEF123", "function": {"name": "w", "arguments": "{\"c\": 1}"}}]},
               {"role": "tool", "content": "sunny", "tool_call_id": "abcDEF123", "name": "w"}]
    run(chat.complete(req(messages=history)))
    messages, _ = engine.rendered[-1]
    assert messages[1].tool_calls[0]["function"]["name"] == "w"
    assert (messages[2].role, messages[2].tool_call_id, messages[2].name) == ("tool", "abcDEF123", "w")


def test_min_tokens_above_max_tokens(services: Any) -> None:
    chat, _ = services
    with pytest.raises(BadRequest):
        run(chat.complete(req(min_tokens=9)))


def test_busy_engine_is_503_with_retry_after(services: Any, engine: Recording, monkeypatch: Any) -> None:
    chat, _ = services

    def busy_stream(*_: Any) -> Any:
        async def gen() -> Any:
            raise EngineBusy("full", retry_after=3)
            yield  # pragma: no cover
        return gen()

    monkeypatch.setattr(engine, "stream", busy_stream)
    with pytest.raises(ServiceUnavailable) as info:
        run(chat.complete(req()))
    assert info.value.headers["Retry-After"] == "3"


def test_fim_uses_the_model_template(services: Any, engine: Recording) -> None:
    _, fim = services
    out = run(fim.complete(FIMCompletionRequest(model="m", prompt="def f(", suffix="return 1", max_tokens=4)))
    assert engine.prompts[-1] == "<PRE>def f(<SUF>return 1<MID>"
    assert out.object == "chat.completion" and out.created == 1000


def test_fim_without_template_names_the_capability(services: Any) -> None:
    _, fim = services
    with pytest.raises(BadRequest) as info:
        run(fim.complete(FIMCompletionRequest(model="plain", prompt="x")))
    assert "completion_fim" in info.value.message


def test_preload_loads_each_model_once(tmp_path: Path) -> None:
    loads: list[str] = []
    entries = [ModelEntry(id="chat", engine="fake", capabilities=["completion_chat"], aliases=["a", "b"]),
               ModelEntry(id="emb", engine="fake", capabilities=[])]

    def text(entry: ModelEntry, *_: Any) -> FakeTextEngine:
        loads.append(f"text:{entry.id}")
        return FakeTextEngine()

    def embedding(entry: ModelEntry, *_: Any) -> Any:
        loads.append(f"embedding:{entry.id}")
        return object()

    manager = EngineManager(Settings(data_dir=tmp_path, models=entries),
                            loaders={("fake", "text"): text, ("fake", "embedding"): embedding})

    async def go() -> None:
        await manager.preload(entries)
        await asyncio.gather(*(manager.text(entries[0]) for _ in range(5)))

    run(go())
    assert loads == ["text:chat", "embedding:emb"]
    assert sorted(manager.loaded()) == ["chat", "emb"]


def test_concurrent_first_requests_load_once(tmp_path: Path) -> None:
    loads: list[str] = []
    entry = ModelEntry(id="chat", engine="fake", capabilities=["completion_chat"])

    def text(e: ModelEntry, *_: Any) -> FakeTextEngine:
        loads.append(e.id)
        return FakeTextEngine()

    manager = EngineManager(Settings(data_dir=tmp_path, models=[entry]), loaders={("fake", "text"): text})

    async def go() -> list[Any]:
        return await asyncio.gather(*(manager.text(entry) for _ in range(8)))

    engines = run(go())
    assert loads == ["chat"] and len({id(e) for e in engines}) == 1
