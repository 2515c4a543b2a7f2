"""Moderations and classifications below HTTP, on the fake classifier engine: shapes, per-label thresholds, one
engine pass per request, conversation context, limits, capability and engine errors."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from mistral_gateway.config import ModelEntry, Settings, default_models
from mistral_gateway.engines.base import (
    MODERATION_CATEGORIES,
    Classification,
    ClassifierTarget,
    EngineBusy,
    EngineError,
)
from mistral_gateway.engines.fake import FakeClassifierEngine
from mistral_gateway.engines.manager import EngineManager, kind_of
from mistral_gateway.errors import BadGateway, BadRequest, NotFound, PayloadTooLarge, ServiceUnavailable
from mistral_gateway.protocol.classifiers import (
    MAX_INPUTS,
    ChatClassificationRequest,
    ChatModerationRequest,
    ClassificationRequest,
    ClassificationResponse,
    ModerationResponse,
)
from mistral_gateway.services.classifiers import ClassifierService, conversation_text, message_text
from mistral_gateway.services.models import ModelCatalog

MODERATION = ClassifierTarget("moderation", MODERATION_CATEGORIES, multi_label=True)
SENTIMENT = ClassifierTarget("sentiment", ("positive", "negative"))
MODEL = "mistral-moderation-latest"

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Harness:
    def __init__(self, tmp_path: Path, engine: Any = None, *, max_total_chars: int = 10_000) -> None:
        entries = [*(m for m in default_models() if "moderation" not in m.capabilities),
                   ModelEntry(id="mistral-moderation-2411", aliases=[MODEL], engine="fake",
                              capabilities=["moderation", "classification"], max_context_length=256),
                   ModelEntry(id="sentiment-head", engine="fake", capabilities=["classification"])]
        self.catalog = ModelCatalog(entries)
        self.engine = engine or FakeClassifierEngine([MODERATION], max_tokens=64)
        self.loaded: list[str] = []

        def loader(entry: ModelEntry, _path: Path | None, _settings: Settings) -> Any:
            self.loaded.append(entry.id)
            return self.engine

        engines = EngineManager(Settings(data_dir=tmp_path / "data"), loaders={("fake", "classifier"): loader})
        self.service = ClassifierService(self.catalog, engines, max_total_chars=max_total_chars,
                                         max_total_messages=8)


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def texts(inputs: Any, model: str = MODEL) -> ClassificationRequest:
    return ClassificationRequest.model_validate({"model": model, "input": inputs})


def chat(inputs: Any, model: str = MODEL) -> ChatModerationRequest:
    return ChatModerationRequest.model_validate({"model": model, "input": inputs})


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


async def test_moderation_shape_scores_and_categories(h: Harness) -> None:
    scored = await h.service.moderate(texts(["a threat of violence and threats", "pii and law", "nothing"]))
    body = ModerationResponse.model_validate_json(scored.body)
    assert re.fullmatch(r"[0-9a-f]{32}", body.id) and body.model == MODEL
    first, second, third = body.results
    assert list(first.category_scores) == list(MODERATION_CATEGORIES) == list(first.categories)
    assert first.category_scores["violence_and_threats"] == 0.9 and first.categories["violence_and_threats"]
    assert [c for c, hit in second.categories.items() if hit] == ["law", "pii"]  # multi-label
    assert not any(third.categories.values()) and set(third.category_scores.values()) == {0.1}
    assert scored.tokens == sum(len(t.split()) for t in ["a threat of violence and threats", "pii and law",
                                                         "nothing"])


async def test_one_string_is_one_result(h: Harness) -> None:
    body = orjson.loads((await h.service.moderate(texts("selfharm"))).body)
    assert len(body["results"]) == 1 and body["results"][0]["categories"]["selfharm"] is True


async def test_categories_follow_the_engines_per_label_thresholds(tmp_path: Path) -> None:
    engine = FakeClassifierEngine([MODERATION], thresholds={**{c: 0.5 for c in MODERATION_CATEGORIES},
                                                            "health": 0.95, "financial": 0.05})
    h = Harness(tmp_path, engine)
    result = orjson.loads((await h.service.moderate(texts("health"))).body)["results"][0]
    assert result["category_scores"]["health"] == 0.9 and result["categories"]["health"] is False  # 0.9 < 0.95
    assert result["category_scores"]["financial"] == 0.1 and result["categories"]["financial"] is True  # >= 0.05
    assert result["categories"]["sexual"] is False


async def test_all_inputs_go_to_the_engine_in_one_call(h: Harness) -> None:
    await h.service.moderate(texts([f"text {i}" for i in range(50)]))
    assert len(h.engine.calls) == 1 and len(h.engine.calls[0]) == 50


async def test_scores_are_clamped_to_the_unit_interval(tmp_path: Path) -> None:
    class Wild:
        targets, thresholds, max_tokens = (MODERATION,), {}, 64

        async def classify(self, batch: Sequence[str]) -> list[Classification]:
            return [Classification({"moderation": {c: 1.5 if c == "law" else -0.2 for c in MODERATION_CATEGORIES}},
                                   3) for _ in batch]

    result = orjson.loads((await Harness(tmp_path, Wild()).service.moderate(texts("x"))).body)["results"][0]
    assert result["category_scores"]["law"] == 1.0 and result["category_scores"]["pii"] == 0.0
    assert result["categories"]["law"] is True and result["categories"]["pii"] is False  # default threshold 0.5


async def test_classification_shape_lists_every_target(tmp_path: Path) -> None:
    h = Harness(tmp_path, FakeClassifierEngine([MODERATION, SENTIMENT]))
    body = ClassificationResponse.model_validate_json((await h.service.classify(texts(["positive law"]))).body)
    (result,) = body.results
    assert set(result) == {"moderation", "sentiment"}
    assert result["moderation"].scores["law"] == 0.9 and result["moderation"].scores["pii"] == 0.1
    assert result["sentiment"].scores == pytest.approx({"positive": 0.9, "negative": 0.1})


async def test_a_classification_only_model_cannot_moderate(tmp_path: Path) -> None:
    h = Harness(tmp_path, FakeClassifierEngine([SENTIMENT]))
    out = orjson.loads((await h.service.classify(texts("negative", model="sentiment-head"))).body)
    assert set(out["results"][0]) == {"sentiment"}
    with pytest.raises(BadRequest, match="'moderation'") as err:
        await h.service.moderate(texts("x", model="sentiment-head"))
    assert err.value.code == "UNSUPPORTED_MODEL_CAPABILITY"


async def test_a_classifier_without_the_moderation_categories_is_an_engine_error(tmp_path: Path) -> None:
    h = Harness(tmp_path, FakeClassifierEngine([SENTIMENT]))
    with pytest.raises(BadGateway):
        await h.service.moderate(texts("x"))  # the moderation entry's head lacks the nine categories


@pytest.mark.parametrize(("model", "error", "fragment"), [
    ("mistral-small-latest", BadRequest, "'moderation'"),  # a chat model
    ("mistral-embed", BadRequest, "'moderation'"),  # an embedding model
    ("no-such-model", NotFound, "not found"),
])
async def test_models_without_the_capability(h: Harness, model: str, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        await h.service.moderate(texts("x", model=model))
    with pytest.raises(error):
        await h.service.classify_chat(ChatClassificationRequest.model_validate(
            {"model": model, "input": {"messages": [user("x")]}}))
    assert h.loaded == []  # refused before any engine loads


def test_the_moderation_entry_is_a_classifier() -> None:
    entry = ModelEntry(id="m", engine="fake", capabilities=["moderation", "classification"])
    assert kind_of(entry) == "classifier"
    assert kind_of(ModelEntry(id="c", engine="fake", capabilities=["completion_chat", "classification"])) == "text"


@pytest.mark.parametrize("value", [[], [[]], [[user("a")], []]])
async def test_empty_inputs_are_400(h: Harness, value: Any) -> None:
    with pytest.raises(BadRequest) as err:
        await h.service.moderate_chat(chat(value))
    assert err.value.status == 400 and err.value.code == "EMPTY_INPUT"
    assert ("empty list" if value == [] else "no messages") in err.value.message


async def test_empty_text_list_and_empty_chat_classification_list_are_400(h: Harness) -> None:
    with pytest.raises(BadRequest, match="empty"):
        await h.service.moderate(texts([]))
    with pytest.raises(BadRequest, match="empty"):
        await h.service.classify_chat(ChatClassificationRequest.model_validate({"model": MODEL, "input": []}))
    with pytest.raises(BadRequest, match="no messages"):
        await h.service.classify_chat(ChatClassificationRequest.model_validate(
            {"model": MODEL, "input": {"messages": []}}))


async def test_total_characters_are_capped(h: Harness) -> None:
    with pytest.raises(PayloadTooLarge) as err:
        await h.service.moderate(texts(["x" * 6_000, "y" * 6_000]))  # the harness allows 10,000
    assert err.value.code == "INPUT_TOO_LARGE"
    with pytest.raises(PayloadTooLarge):
        await h.service.moderate_chat(chat([user("x" * 6_000), user("y" * 6_000)]))
    assert h.engine.calls == []


async def test_total_messages_are_capped(h: Harness) -> None:
    with pytest.raises(BadRequest) as err:
        await h.service.moderate_chat(chat([[user("a")] * 5, [user("b")] * 4]))  # the harness allows 8
    assert err.value.code == "TOO_MANY_MESSAGES"


def test_model_limits() -> None:
    with pytest.raises(ValidationError):  # a list inside a conversation is not a message
        chat([user("a"), []])
    with pytest.raises(ValidationError):
        texts(["x"] * (MAX_INPUTS + 1))
    with pytest.raises(ValidationError):
        texts("x" * 100_001)
    with pytest.raises(ValidationError):
        chat([[user("a")]] * (MAX_INPUTS + 1))
    assert len(texts(["x"] * MAX_INPUTS).texts) == MAX_INPUTS


async def test_chat_moderation_one_result_per_conversation(h: Harness) -> None:
    one = orjson.loads((await h.service.moderate_chat(chat([user("hello"), user("health question")]))).body)
    assert len(one["results"]) == 1 and one["results"][0]["categories"]["health"] is True
    many = orjson.loads((await h.service.moderate_chat(chat([[user("sexual")], [user("fine")]]))).body)
    assert [r["categories"]["sexual"] for r in many["results"]] == [True, False]
    assert len(h.engine.calls[-1]) == 2  # both conversations in one engine call


async def test_chat_classification_both_input_shapes(h: Harness) -> None:
    one = ChatClassificationRequest.model_validate({"model": MODEL, "input": {"messages": [user("pii")]}})
    many = ChatClassificationRequest.model_validate({"model": MODEL, "input": [{"messages": [user("pii")]},
                                                                               {"messages": [user("law")]}]})
    assert len(orjson.loads((await h.service.classify_chat(one)).body)["results"]) == 1
    out = orjson.loads((await h.service.classify_chat(many)).body)["results"]
    assert [r["moderation"]["scores"]["law"] for r in out] == [0.1, 0.9]


async def test_the_last_turn_is_read_with_its_context(h: Harness) -> None:
    conversation = [{"role": "system", "content": "be nice"}, user("tell me about law"),
                    {"role": "assistant", "content": [{"type": "text", "text": "sure, "}, {"type": "text",
                                                                                          "text": "ask"}]}]
    await h.service.moderate_chat(chat(conversation))
    assert h.engine.calls[-1] == ["system: be nice\nuser: tell me about law\nassistant: sure, ask"]


async def test_context_is_cut_to_the_window_most_recent_first(h: Harness) -> None:
    old = user("pii " * 100)  # long and early: outside the window of 64 tokens x 3 characters
    recent = user("hello there")
    await h.service.moderate_chat(chat([old, recent, user("violence and threats")]))
    (text,) = h.engine.calls[-1]
    assert text.endswith("user: hello there\nuser: violence and threats")
    assert len(text) == 64 * 3 and "pii" in text  # the rest of the budget: the end of the older turn


def test_conversation_text() -> None:
    assert conversation_text(["a: 1"], 2) == "a: 1"  # the last turn is never cut
    assert conversation_text(["a: 12345", "b: 1"], 4) == "b: 1"  # no room left
    assert conversation_text(["a: 12345", "b: 1"], 100) == "a: 12345\nb: 1"
    assert conversation_text(["a: 12345", "b: 1"], 8) == "345\nb: 1"  # the older turn keeps its end
    assert conversation_text(["x", "a: 12345", "b: 1"], 13) == "a: 12345\nb: 1"  # exactly fits


def test_message_text_refuses_images() -> None:
    request = chat([{"role": "user", "content": [{"type": "image_url", "image_url": "http://example.com/a.png"}]}])
    with pytest.raises(BadRequest) as err:
        message_text(request.conversations[0][0])
    assert err.value.code == "UNSUPPORTED_CONTENT"
    thinking = chat([{"role": "assistant", "content": [
        {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}, {"type": "text", "text": "answer"}]}])
    assert message_text(thinking.conversations[0][0]) == "assistant: answer"  # the thinking is not scored


class Failing:
    targets, thresholds, max_tokens = (MODERATION,), {}, 64

    def __init__(self, exc: Exception | None = None, count: int | None = None) -> None:
        self.exc, self.count = exc, count

    async def classify(self, batch: Sequence[str]) -> list[Classification]:
        if self.exc is not None:
            raise self.exc
        return [Classification({"moderation": dict.fromkeys(MODERATION_CATEGORIES, 0.0)}, 1)] * (self.count or 0)


@pytest.mark.parametrize(("engine", "error"), [
    (Failing(EngineBusy("busy", retry_after=3)), ServiceUnavailable),
    (Failing(EngineError("boom")), BadGateway),
    (Failing(count=1), BadGateway),  # one result for two inputs
])
async def test_engine_failures_are_502_or_503(tmp_path: Path, engine: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        await Harness(tmp_path, engine).service.moderate(texts(["a", "b"]))


async def test_a_load_failure_is_503(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    def broken(entry: ModelEntry, _path: Path | None, _settings: Settings) -> Any:
        raise EngineError("head file missing")

    h.service._engines = EngineManager(Settings(data_dir=tmp_path / "d"), loaders={("fake", "classifier"): broken})
    with pytest.raises(ServiceUnavailable) as err:
        await h.service.moderate(texts("x"))
    assert err.value.code == "MODEL_LOAD_FAILED"
