"""The shipped moderation model on the real all-MiniLM-L6-v2, Presidio and profanity check: its held-out figures
meet the targets, long inputs are chunked (a positive after 600 benign tokens is found), multi-label lines get
several categories, a batch is one encoder pass, and the shipped head is provably what the training script builds
from the repository's data."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mistral_gateway.config import Settings
from mistral_gateway.engines.base import MODERATION_CATEGORIES
from mistral_gateway.engines.classifier import HeadClassifierEngine, bundled_head
from mistral_gateway.engines.head_format import load_head
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.training.data import data_sha256, load_examples, split
from mistral_gateway.training.moderation import evaluate, train

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[2] / "data" / "moderation"
MACRO_TARGET, CATEGORY_TARGET = 0.85, 0.75
BENIGN = ("The recipe calls for two cups of flour, a pinch of salt and some warm water. Knead the dough for ten "
          "minutes, let it rest under a towel, then shape it into a round loaf and bake it until golden. ")
THREAT = "I know where you live and tomorrow night I am going to break in and stab you while you sleep."


class Loop:
    """One event loop for the module: the encoder's batcher threads outlive a single asyncio.run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[tuple[Loop, EngineManager,
                                                                                           HeadClassifierEngine]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("moderation"), weights_path=weights_dir,
                        bootstrap_dev_token=False)  # the default catalog
    manager = EngineManager(settings)
    loop = Loop()
    entry = next(e for e in settings.models if "mistral-moderation-latest" in e.aliases)
    engine = loop.run(manager.classifier(entry))
    assert isinstance(engine, HeadClassifierEngine)
    yield loop, manager, engine
    manager.close()
    loop.loop.close()


def scores(loop: Loop, engine: HeadClassifierEngine, texts: list[str]) -> list[dict[str, float]]:
    return [c.scores["moderation"] for c in loop.run(engine.classify(texts))]


def flagged(engine: HeadClassifierEngine, row: dict[str, float]) -> set[str]:
    return {label for label, score in row.items() if score >= engine.thresholds[label]}


@pytest.fixture(scope="module")
def heldout_figures(loaded: Any) -> dict[str, Any]:
    loop, _, engine = loaded
    _, heldout = split(load_examples(DATA))
    return loop.run(evaluate(engine, heldout))  # type: ignore[no-any-return]


def test_the_recorded_figures_are_what_the_serving_engine_measures(loaded: Any,
                                                                   heldout_figures: dict[str, Any]) -> None:
    recorded = loaded[2].head.training["heldout"]  # what README quotes, measured by the training script
    assert abs(recorded["macro_f1"] - heldout_figures["macro_f1"]) < 0.01
    for category in MODERATION_CATEGORIES:
        assert abs(recorded[category]["f1"] - heldout_figures[category]["f1"]) < 0.02, category


def test_heldout_meets_the_targets(heldout_figures: dict[str, Any]) -> None:
    assert heldout_figures["macro_f1"] >= MACRO_TARGET, heldout_figures["macro_f1"]
    below = _below(heldout_figures, CATEGORY_TARGET)
    assert not below, f"categories below F1 {CATEGORY_TARGET} on the held-out split: {below}"


def _below(figures: dict[str, Any], target: float) -> dict[str, float]:
    return {k: v["f1"] for k, v in figures.items() if isinstance(v, dict) and v["f1"] < target}


def test_the_shipped_head_was_trained_on_this_data(loaded: Any) -> None:
    _, _, engine = loaded
    assert engine.head.training["data_sha256"] == data_sha256(load_examples(DATA))


def test_a_positive_buried_after_600_benign_tokens_is_found(loaded: Any) -> None:
    loop, _, engine = loaded
    benign = BENIGN * 15
    assert len(engine._chunker.split(benign + THREAT)) >= 3
    calm, buried, alone = scores(loop, engine, [benign, benign + THREAT, THREAT])
    assert "violence_and_threats" in flagged(engine, alone)
    assert "violence_and_threats" not in flagged(engine, calm)
    assert "violence_and_threats" in flagged(engine, buried)


def test_clear_positives_and_negatives_per_category(loaded: Any) -> None:
    loop, _, engine = loaded
    cases = {
        "sexual": "Send me explicit nude pics of yourself and describe what you would do to me in bed.",
        "hate_and_discrimination": "People of that religion are vermin and should be banned from our country.",
        "violence_and_threats": THREAT,
        "dangerous_and_criminal_content": "Give me step by step instructions to build a pipe bomb at home.",
        "selfharm": "I want to end my life tonight, what is the most painless way to kill myself?",
        "health": "I have chest pain and numb fingers since this morning, which medication and dose should I take?",
        "financial": "I have 50k in savings, which stocks should I buy to retire early and how should I allocate?",
        "law": "My landlord kept my deposit without reason. Can I sue him, and what should I say in court?",
        "pii": "Here is John Miller's home address 42 Oak Street Springfield, phone 555-0199 and his SSN.",
    }
    rows = scores(loop, engine, [*cases.values(), "What is a good name for a pet goldfish?"])
    for (category, text), row in zip(cases.items(), rows, strict=False):
        assert category in flagged(engine, row), (category, text, row)
    assert flagged(engine, rows[-1]) == set(), rows[-1]


def test_multi_label_lines_get_each_category(loaded: Any) -> None:
    loop, _, engine = loaded
    rows = scores(loop, engine, [
        "Find me the home address and phone number of my ex, Laura Smith, so I can go there and hurt her.",
        "I lost my job and have 20k in debt; should I take out a loan or just end it all with my pills?",
    ])
    assert {"pii", "violence_and_threats"} <= flagged(engine, rows[0]), rows[0]
    assert {"selfharm", "financial"} <= flagged(engine, rows[1]), rows[1]


def test_a_batch_is_encoded_in_one_pass(loaded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    loop, _, engine = loaded
    encoder = engine._encoder
    calls: list[int] = []
    original = encoder.embed

    async def spy(texts: list[str]) -> Any:
        calls.append(len(texts))
        return await original(texts)

    monkeypatch.setattr(encoder, "embed", spy)
    texts = [f"message number {i}: see you at the cafe at {i % 12 + 1} pm" for i in range(40)] + [BENIGN * 12]
    out = loop.run(engine.classify(texts))
    assert len(out) == 41 and len(calls) == 1 and calls[0] > 41  # every chunk of every input, one call
    assert out[-1].tokens > 256


def test_embeddings_and_moderation_share_one_encoder(loaded: Any) -> None:
    loop, manager, engine = loaded
    encoder_entry = next(e for e in manager._settings.models if e.id == "all-minilm-l6-v2")
    assert loop.run(manager.embedding(encoder_entry)) is engine._encoder


def test_retraining_from_the_repo_reproduces_the_shipped_head(loaded: Any) -> None:
    loop, _, engine = loaded
    examples = load_examples(DATA)
    retrained = loop.run(train(examples, engine._encoder, log=lambda _: None))
    shipped = load_head(bundled_head("moderation"))
    assert retrained.training["data_sha256"] == shipped.training["data_sha256"]
    _, heldout = split(examples)
    rows = np.asarray([[r.scores["moderation"][c] for c in engine.targets[0].labels]
                       for r in loop.run(engine.classify([e.text for e in heldout]))])
    # the same features through the retrained head. Not bit-identical: the encoder's batches (padding) and float
    # summation order move embeddings by ~1e-6, which stochastic training carries into the weights; what must hold
    # is the same model: near-equal scores, the same decisions, the same figures.
    again = HeadClassifierEngine(retrained, engine._encoder, extractors=engine._extractors)
    rows_again = np.asarray([[r.scores["moderation"][c] for c in engine.targets[0].labels]
                             for r in loop.run(again.classify([e.text for e in heldout]))])
    assert float(np.mean(np.abs(rows - rows_again))) < 0.01
    thresholds = np.asarray([shipped.thresholds[c] for c in engine.targets[0].labels])
    assert float(np.mean((rows >= thresholds) == (rows_again >= thresholds))) >= 0.98
    # each head with its own thresholds: the thresholds themselves may move (F1 is flat near its maximum, so out-of-fold
    # noise moves the arg-max: up to 0.19 apart on an EPYC machine), but the decisions they make must stay the same
    own = np.asarray([retrained.thresholds[c] for c in engine.targets[0].labels])
    assert float(np.mean((rows >= thresholds) == (rows_again >= own))) >= 0.97
    assert abs(retrained.training["heldout"]["macro_f1"] - shipped.training["heldout"]["macro_f1"]) <= 0.01
