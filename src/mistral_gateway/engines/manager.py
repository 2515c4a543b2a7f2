"""Loads each configured model's engine once (lazily, or all at start) and hands it to services.

Aliases resolve to the same catalog entry, so one set of weights is never loaded twice. Loading runs in a worker
thread; concurrent first requests for the same model wait for the one load.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anyio.to_thread import run_sync

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import (
    ClassifierEngine,
    EmbeddingEngine,
    EngineError,
    EngineUnavailable,
    OcrEngine,
    SpeechEngine,
    TextEngine,
)

__all__ = ["EngineManager", "Loader", "kind_of"]

# entry, weights path (None when the engine needs none) -> engine
Loader = Callable[[ModelEntry, Path | None, Settings], Any]

_LOADERS: dict[tuple[str, str], str] = {
    ("llama.cpp", "text"): "mistral_gateway.engines.llama:load",
    ("sentence-transformers", "embedding"): "mistral_gateway.engines.sentence:load",
    ("fake", "text"): "mistral_gateway.engines.fake:load_text",
    ("fake", "embedding"): "mistral_gateway.engines.fake:load_embedding",
    ("fake", "classifier"): "mistral_gateway.engines.fake:load_classifier",
    ("fake", "ocr"): "mistral_gateway.engines.fake:load_ocr",
    # needs the encoder's engine too: see EngineManager.classifier
    ("classifier", "classifier"): "mistral_gateway.engines.classifier:load",
    ("faster-whisper", "speech"): "mistral_gateway.engines.speech:load",
    ("fake", "speech"): "mistral_gateway.engines.fake:load_speech",
    ("rapidocr", "ocr"): "mistral_gateway.engines.ocr:load",
}
CLASSIFIER_CAPABILITIES = frozenset({"moderation", "classification"})


def kind_of(entry: ModelEntry) -> str:
    """What an entry serves: embeddings (no chat capability, or an embedding engine), text, classifications
    (a classifier engine, or a fake with the moderation/classification capability and no chat), speech (a speech
    engine, or a fake with the audio_transcription capability, chat or not), or OCR (the rapidocr engine, or a fake
    with the ocr capability)."""
    if entry.engine == "sentence-transformers":
        return "embedding"
    # a speech model's chat is a cascade (services.chat_audio): its chat capability does not make it a text model
    if entry.engine == "faster-whisper" or "audio_transcription" in entry.capabilities:
        return "speech"
    if entry.engine == "rapidocr" or (entry.engine == "fake" and "ocr" in entry.capabilities):
        return "ocr"
    if {"completion_chat", "completion_fim"} & set(entry.capabilities):
        return "text"
    if entry.engine == "classifier" or CLASSIFIER_CAPABILITIES & set(entry.capabilities):
        return "classifier"
    return "embedding"


class EngineManager:
    def __init__(self, settings: Settings, loaders: dict[tuple[str, str], Loader] | None = None) -> None:
        self._settings = settings
        self._loaders = loaders
        self._engines: dict[str, Any] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._releases: dict[str, int] = {}  # model id -> times released: a load that spans a release is dropped

    async def text(self, entry: ModelEntry) -> TextEngine:
        return await self._get(entry, "text")  # type: ignore[no-any-return]

    async def embedding(self, entry: ModelEntry) -> EmbeddingEngine:
        return await self._get(entry, "embedding")  # type: ignore[no-any-return]

    async def speech(self, entry: ModelEntry) -> SpeechEngine:
        return await self._get(entry, "speech")  # type: ignore[no-any-return]
    async def ocr(self, entry: ModelEntry) -> OcrEngine:
        return await self._get(entry, "ocr")  # type: ignore[no-any-return]

    async def classifier(self, entry: ModelEntry) -> ClassifierEngine:
        """A classifier head over its encoder: the encoder entry's embedding engine (loaded once, shared with the
        embeddings endpoint) is loaded first, then the head; the encoder is checked against the head's probe."""
        if entry.engine != "classifier":
            return await self._get(entry, "classifier")  # type: ignore[no-any-return]
        if entry.id in self._engines:
            return self._engines[entry.id]  # type: ignore[no-any-return]
        encoder_entry = self._entry(entry.encoder or "")
        if encoder_entry is None or kind_of(encoder_entry) != "embedding":
            raise EngineError(f"model {entry.id!r}: its encoder {entry.encoder!r} is not an embedding model of the "
                              f"catalog")
        encoder = await self.embedding(encoder_entry)
        return await self._get(entry, "classifier", verify="check_encoder",  # type: ignore[no-any-return]
                               encoder=encoder)

    def release(self, model_id: str) -> bool:
        """Drop and close the engine loaded for ``model_id`` (a deleted or archived fine-tuned model); whether one
        was loaded. Requests still running on it fail as on any engine failure; the next load starts afresh."""
        if model_id in self._locks:  # loaded or loading (not any name: the counts stay bounded)
            self._releases[model_id] = self._releases.get(model_id, 0) + 1
        engine = self._engines.pop(model_id, None)
        close = getattr(engine, "close", None)
        if close is not None:
            close()
        return engine is not None

    def loaded(self) -> list[str]:
        return list(self._engines)

    def slot_usage(self) -> dict[str, tuple[int, int, int]]:
        """Model id -> (slots busy, slots, requests waiting) of the loaded engines that have slots (llama.cpp)."""
        usage = {}
        for model_id, engine in list(self._engines.items()):  # a copy: a load may finish meanwhile
            read = getattr(engine, "slot_usage", None)
            if read is not None:
                usage[model_id] = read()
        return usage

    async def preload(self, entries: list[ModelEntry]) -> None:
        """Load every model now (``load_models_at_start``), one after another to bound peak memory."""
        for entry in entries:
            kind = kind_of(entry)
            if kind == "classifier":
                await self.classifier(entry)
            else:
                await self._get(entry, kind)

    def _entry(self, name: str) -> ModelEntry | None:
        return next((e for e in self._settings.models if name == e.id or name in e.aliases), None)

    async def _get(self, entry: ModelEntry, kind: str, verify: str | None = None, **extra: Any) -> Any:
        """The entry's engine, loaded on first use; ``verify`` names an async method of the new engine that must
        pass before anyone gets it; ``extra`` goes to the loader."""
        engine = self._engines.get(entry.id)
        if engine is not None:
            return engine
        lock = self._locks.setdefault(entry.id, asyncio.Lock())
        async with lock:
            engine = self._engines.get(entry.id)
            if engine is None:
                releases = self._releases.get(entry.id, 0)
                loader = self._loader(entry.engine, kind)
                engine = await run_sync(lambda: loader(entry, self._weights(entry), self._settings, **extra))
                if verify is not None:
                    await getattr(engine, verify)()
                if self._releases.get(entry.id, 0) != releases:  # deleted or archived meanwhile: not kept
                    await run_sync(getattr(engine, "close", lambda: None))
                    raise EngineUnavailable(f"model {entry.id!r} was released while it loaded")
                self._engines[entry.id] = engine
        return engine

    def _loader(self, engine: str, kind: str) -> Loader:
        if self._loaders is not None and (engine, kind) in self._loaders:
            return self._loaders[(engine, kind)]
        ref = _LOADERS.get((engine, kind))
        if ref is None:
            raise ValueError(f"engine {engine!r} cannot serve {kind} models")
        module, _, name = ref.partition(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]

    def weights(self, entry: ModelEntry) -> Path | None:
        """The entry's weights file (a bundled asset is assembled on first use); None: it names none."""
        return self._weights(entry)

    def _weights(self, entry: ModelEntry) -> Path | None:
        if entry.path:
            return Path(entry.path).expanduser()
        if entry.asset:
            from mistral_gateway.engines.assets import resolve_asset

            return resolve_asset(entry.asset, self._settings.weights_dir)
        return None

    def close(self) -> None:
        for engine in self._engines.values():
            close = getattr(engine, "close", None)
            if close is not None:
                close()
        self._engines.clear()
