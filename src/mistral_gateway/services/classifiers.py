"""Moderations and classifications (plain texts and conversations) on a classifier engine.

Every input of a request is scored in one ``classify`` call (the engine encodes them in one pass). A conversation
becomes one text: its last message whole, preceded by as much of the earlier conversation as fits the encoder's
window, most recent first (``conversation_text``), so the last turn is judged in its context and an earlier turn
never decides the result on its own. Bodies are rendered straight to JSON bytes (no per-result models).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from mistral_gateway.config import ModelEntry
from mistral_gateway.engines.base import (
    MODERATION_CATEGORIES,
    Classification,
    ClassifierEngine,
    ClassifierTarget,
    EngineError,
)
from mistral_gateway.engines.manager import EngineManager, kind_of
from mistral_gateway.errors import BadRequest, PayloadTooLarge, ServiceUnavailable
from mistral_gateway.protocol.classifiers import (
    MAX_TOTAL_CHARS,
    MAX_TOTAL_MESSAGES,
    ChatClassificationRequest,
    ChatModerationRequest,
    ClassificationRequest,
)
from mistral_gateway.services.completions import engine_errors, resolve_text_model
from mistral_gateway.services.models import ModelCatalog

__all__ = ["CHARS_PER_TOKEN", "DEFAULT_THRESHOLD", "ClassifierService", "Scored", "conversation_text",
           "message_text"]

# A conservative characters-per-token estimate for English with a WordPiece/BPE vocabulary (~4): the context budget
# must not push the conversation past the encoder's window, where a chunk of context alone would be scored.
CHARS_PER_TOKEN = 3
DEFAULT_THRESHOLD = 0.5  # for a label the engine gives no threshold


@dataclass(frozen=True, slots=True)
class Scored:
    """A rendered response body and the tokens the encoder read (metered as prompt tokens)."""

    body: bytes
    tokens: int


class ClassifierService:
    def __init__(self, catalog: ModelCatalog, engines: EngineManager, *, max_total_chars: int = MAX_TOTAL_CHARS,
                 max_total_messages: int = MAX_TOTAL_MESSAGES) -> None:
        self._catalog = catalog
        self._engines = engines
        self.max_total_chars = max_total_chars
        self.max_total_messages = max_total_messages

    # ``resolved``: the model's entry when the application layer resolved it (a workspace's fine-tuned model)
    async def moderate(self, request: ClassificationRequest, resolved: ModelEntry | None = None) -> Scored:
        engine, results = await self._score(request.model, "moderation", self._texts(request.texts), resolved)
        return _moderation(request.model, engine, results)

    async def moderate_chat(self, request: ChatModerationRequest, resolved: ModelEntry | None = None) -> Scored:
        engine = await self._engine(request.model, "moderation", resolved)
        texts = self._conversations(request.conversations, engine.max_tokens)
        return _moderation(request.model, engine, await _classify(engine, texts))

    async def classify(self, request: ClassificationRequest, resolved: ModelEntry | None = None) -> Scored:
        _, results = await self._score(request.model, "classification", self._texts(request.texts), resolved)
        return _classification(request.model, results)

    async def classify_chat(self, request: ChatClassificationRequest, resolved: ModelEntry | None = None) -> Scored:
        engine = await self._engine(request.model, "classification", resolved)
        texts = self._conversations(request.conversations, engine.max_tokens)
        return _classification(request.model, await _classify(engine, texts))

    async def _score(self, model: str, capability: str, texts: list[str],
                     resolved: ModelEntry | None) -> tuple[ClassifierEngine, list[Classification]]:
        engine = await self._engine(model, capability, resolved)
        return engine, await _classify(engine, texts)

    async def _engine(self, model: str, capability: str, resolved: ModelEntry | None) -> ClassifierEngine:
        entry = self._resolve(model, capability, resolved)
        try:
            return await self._engines.classifier(entry)
        except EngineError as exc:  # e.g. a head file missing: a 503 with Retry-After, like every engine failure
            raise ServiceUnavailable(f"model {model!r} could not be loaded: {exc}", retry_after=30.0,
                                     code="MODEL_LOAD_FAILED") from exc

    def _resolve(self, model: str, capability: str, resolved: ModelEntry | None) -> ModelEntry:
        entry = resolve_text_model(self._catalog, model, capability, resolved)  # 404 unknown; 400: the capability
        if kind_of(entry) != "classifier":  # e.g. a chat model configured with a classifier capability
            raise BadRequest(f"model {model!r} is not served by a classifier engine and cannot do {capability!r}",
                             code="UNSUPPORTED_MODEL_CAPABILITY", param="model")
        return entry

    def _texts(self, texts: list[str]) -> list[str]:
        _check_count(len(texts), "text")
        self._check_chars(sum(len(t) for t in texts))
        return texts

    def _conversations(self, conversations: list[list[Any]], max_tokens: int) -> list[str]:
        _check_count(len(conversations), "conversation")
        messages = 0
        for i, conversation in enumerate(conversations):
            if not conversation:
                raise BadRequest(f"conversation {i} has no messages", code="EMPTY_INPUT", param="input")
            messages += len(conversation)
        if messages > self.max_total_messages:
            raise BadRequest(f"{messages} messages in one request; the limit is {self.max_total_messages}",
                             code="TOO_MANY_MESSAGES", param="input")
        turns = [[message_text(m) for m in conversation] for conversation in conversations]
        self._check_chars(sum(len(text) for conversation in turns for text in conversation))
        return [conversation_text(conversation, max_tokens * CHARS_PER_TOKEN) for conversation in turns]

    def _check_chars(self, total: int) -> None:
        if total > self.max_total_chars:
            raise PayloadTooLarge(f"the inputs total {total} characters; the limit per request is "
                                  f"{self.max_total_chars}", code="INPUT_TOO_LARGE")


def _check_count(count: int, what: str) -> None:
    if count == 0:
        raise BadRequest(f"input is an empty list; give at least one {what}", code="EMPTY_INPUT", param="input")


async def _classify(engine: ClassifierEngine, texts: Sequence[str]) -> list[Classification]:
    try:
        results = await engine.classify(texts)
    except EngineError as exc:
        raise engine_errors(exc) from exc
    if len(results) != len(texts):
        raise engine_errors(EngineError(f"the engine returned {len(results)} results for {len(texts)} inputs"))
    return results


def message_text(message: Any) -> str:
    """A message as ``role: text`` (text chunks joined; an earlier answer's thinking left out). Classifiers read
    text only: an image or document chunk is a 400."""
    content = message.content
    if content is None or isinstance(content, str):
        return f"{message.role}: {content or ''}"
    parts = []
    for chunk in content:
        if chunk.type == "text":
            parts.append(chunk.text)
        elif chunk.type != "thinking":
            raise BadRequest(f"content chunks of type {chunk.type!r} cannot be classified; classifiers read text",
                             code="UNSUPPORTED_CONTENT", param="input")
    return f"{message.role}: {''.join(parts)}"


def conversation_text(turns: Sequence[str], budget: int) -> str:
    """The last turn whole, after as much of the earlier turns as fits ``budget`` characters in all, taken most
    recent first (the oldest one that fits only in part keeps its end). Turns are joined by newlines."""
    last = turns[-1]
    room = budget - len(last)
    context: list[str] = []
    for turn in reversed(turns[:-1]):
        if room <= 0:
            break
        if len(turn) + 1 > room:
            context.append(turn[len(turn) + 1 - room:])
            break
        context.append(turn)
        room -= len(turn) + 1
    return "\n".join([*reversed(context), last])


def _moderation_target(engine: ClassifierEngine) -> ClassifierTarget:
    for target in engine.targets:
        if target.multi_label and set(MODERATION_CATEGORIES) <= set(target.labels):
            return target
    raise engine_errors(EngineError("the model's classifier has no multi-label target with Mistral's moderation "
                                    "categories"))


def _moderation(model: str, engine: ClassifierEngine, results: list[Classification]) -> Scored:
    target = _moderation_target(engine).name
    thresholds = {c: engine.thresholds.get(c, DEFAULT_THRESHOLD) for c in MODERATION_CATEGORIES}
    rows = []
    for result in results:
        scores = {c: _unit(result.scores[target][c]) for c in MODERATION_CATEGORIES}
        rows.append({"categories": {c: scores[c] >= thresholds[c] for c in MODERATION_CATEGORIES},
                     "category_scores": scores})
    return Scored(orjson.dumps({"id": uuid.uuid4().hex, "model": model, "results": rows}),
                  sum(r.tokens for r in results))


def _classification(model: str, results: list[Classification]) -> Scored:
    rows = [{name: {"scores": {label: _unit(score) for label, score in labels.items()}}
             for name, labels in result.scores.items()} for result in results]
    return Scored(orjson.dumps({"id": uuid.uuid4().hex, "model": model, "results": rows}),
                  sum(r.tokens for r in results))


def _unit(score: float) -> float:
    return min(1.0, max(0.0, float(score)))
