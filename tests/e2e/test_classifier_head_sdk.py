"""A classifier trained here, in-process, served end to end: a tiny sentiment head fitted on the real MiniLM's
embeddings of a few labelled sentences, written as a head file, configured as a catalog entry (engine
``classifier``, ``path`` = the file), then called through the official SDK's ``classify`` and ``classify_chat``.
This is the path a fine-tuned classifier will take: one head file plus one model entry."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mistralai.client import Mistral
from mistralai.client.errors import MistralError

from mistral_gateway.config import ModelEntry, Settings, default_models
from mistral_gateway.engines.base import ClassifierTarget
from mistral_gateway.engines.head_format import ClassifierHead, EncoderInfo, FeatureSpec, save_head
from mistral_gateway.engines.manager import EngineManager
from sentiment_samples import NEGATIVE, POSITIVE
from support import serving

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

MODEL = "sentiment-classifier"


def _train(encoder_entry: ModelEntry, settings: Settings, path: Path) -> None:
    """Softmax regression on the encoder's embeddings (plain gradient descent; the classes separate easily)."""
    manager = EngineManager(settings)
    try:
        encoder = asyncio.run(manager.embedding(encoder_entry))
        x = np.asarray(asyncio.run(encoder.embed(POSITIVE + NEGATIVE)).vectors, dtype=np.float64)
        dims = encoder.dimensions
    finally:
        manager.close()
    y = np.array([0] * len(POSITIVE) + [1] * len(NEGATIVE))
    w, b = np.zeros((2, dims)), np.zeros(2)
    for _ in range(500):
        logits = x @ w.T + b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(y)), y] -= 1.0
        w -= 2.0 * (p.T @ x) / len(y)
        b -= 2.0 * p.mean(axis=0)
    head = ClassifierHead(
        encoder=EncoderInfo("sentence-transformers/all-MiniLM-L6-v2", dims, encoder_entry.max_context_length),
        features=(FeatureSpec("embedding", dims),),
        targets=(ClassifierTarget("sentiment", ("positive", "negative")),),
        weights={"sentiment": w.astype(np.float32)}, biases={"sentiment": b.astype(np.float32)}, thresholds={},
        training={"examples": len(y), "note": "tests/e2e/test_classifier_head_sdk.py"})
    save_head(head, path)


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[Mistral]:
    tmp = tmp_path_factory.mktemp("head-sdk")
    encoder = next(m for m in default_models() if m.engine == "sentence-transformers")
    base = Settings(data_dir=tmp / "data", weights_path=weights_dir, bootstrap_dev_token=False, models=[encoder])
    _train(encoder, base, tmp / "sentiment.safetensors")
    entry = ModelEntry(id=MODEL, engine="classifier", path=str(tmp / "sentiment.safetensors"), encoder=encoder.id,
                       capabilities=["classification"], max_context_length=encoder.max_context_length)
    settings = base.model_copy(update={"models": [encoder, entry]})
    with serving(settings) as (server, _services, token), \
            Mistral(api_key=token, server_url=server.base_url, timeout_ms=120_000) as client:
        yield client


def test_classify_with_a_trained_head(sdk: Mistral) -> None:
    res = sdk.classifiers.classify(model=MODEL, inputs=["Such a lovely, cheerful afternoon, I adore it.",
                                                        "This is the worst service I have ever had."])
    assert res.model == MODEL and len(res.results) == 2
    happy, angry = (r["sentiment"].scores for r in res.results)
    assert set(happy) == {"positive", "negative"} and sum(happy.values()) == pytest.approx(1.0, abs=1e-6)
    assert happy["positive"] > 0.5 > angry["positive"], (happy, angry)


def test_classify_chat_and_capabilities(sdk: Mistral) -> None:
    res = sdk.classifiers.classify_chat(model=MODEL, input=[
        {"messages": [{"role": "user", "content": "How was the trip?"},
                      {"role": "assistant", "content": "Wonderful, we loved every minute of it!"}]},
        {"messages": [{"role": "user", "content": "How was the trip?"},
                      {"role": "assistant", "content": "Horrible, everything went wrong and we hated it."}]}])
    good, bad = (r["sentiment"].scores for r in res.results)
    assert good["positive"] > bad["positive"], (good, bad)
    with pytest.raises(MistralError) as err:  # a classifier without the moderation capability
        sdk.classifiers.moderate(model=MODEL, inputs=["x"])
    assert err.value.status_code == 400 and "'moderation'" in err.value.body
    with pytest.raises(MistralError) as err:
        sdk.chat.complete(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 400 and "'completion_chat'" in err.value.body
