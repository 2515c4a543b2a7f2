"""Fine-tuned models served end to end over raw HTTP by their ``ft:`` ids, with real weights: a completion model
whose artifact is a GGUF in the data dir (a copy of the bundled SmolLM2-135M: the point is the serving path, so it
must answer exactly as its base at temperature 0) and a classifier whose head is fitted here (``training/heads.py``
on the real MiniLM's embeddings of a few labelled sentences, written with ``engines/head_format.py``). Each is
chatted with or classified by, archived (refused), unarchived (served again) and deleted (404, its file gone). A
completion model whose artifact is a GGUF LoRA adapter (written by ``training/lora_export``) is served as the base's
weights plus the adapter: a zero adapter answers as the base, a strongly perturbing one does not."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mistral_gateway.config import ModelEntry, Settings, default_models
from mistral_gateway.engines.assets import resolve_asset
from mistral_gateway.engines.base import ClassifierTarget
from mistral_gateway.engines.head_format import ClassifierHead, EncoderInfo, FeatureSpec, save_head
from mistral_gateway.engines.manager import EngineManager
from mistral_gateway.services.container import Services
from mistral_gateway.storage.records import FineTunedModelRecord
from mistral_gateway.training.heads import fit_head
from mistral_gateway.training.lora_export import adapter_tensors, read_layout, write_adapter
from sentiment_samples import NEGATIVE, POSITIVE
from support import serving

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

CHAT_FT = "ft:smollm2-135m-instruct:e2e:20251205:0a1b2c3d"
CLASSIFIER_FT = "ft:classifier:sentiment:20251205:4e5f6a7b"
LABELS = ("positive", "negative")


def write_random_adapter(base_gguf: Path, path: Path, *, scale: float, seed: int = 0) -> None:
    """A rank-8 LoRA adapter on every layer's q_proj, A and B drawn from N(0, scale) (scale 0: B is zero, so the
    adapter changes nothing), written as training/lora_export writes a trained one."""
    layout = read_layout(base_gguf)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    state = {}
    for block in range(layout.n_blocks):
        n_in, n_out = layout.shapes[f"blk.{block}.attn_q.weight"][:2]  # ggml order: (in, out)
        module = f"base_model.model.model.layers.{block}.self_attn.q_proj"
        state[f"{module}.lora_A.weight"] = rng.normal(0, max(scale, 0.01), size=(8, n_in))
        state[f"{module}.lora_B.weight"] = rng.normal(0, scale, size=(n_out, 8)) if scale else np.zeros((n_out, 8))
    write_adapter(path, adapter_tensors(state, layout), layout, alpha=16.0)


@dataclass
class Stack:
    base_url: str
    services: Services
    token: str  # of workspace "tuners", which owns the fine-tuned models
    other: str  # a token of another workspace
    workspace_id: str  # of "tuners"

    def call(self, method: str, path: str, *, token: str | None = None, lowcode: bool = False,
             **kw: Any) -> httpx.Response:
        if lowcode:
            return httpx.request(method, f"{self.base_url}/mistralai/v1{path}",
                                 params={"api_token": token or self.token}, timeout=120, **kw)
        return httpx.request(method, f"{self.base_url}/v1{path}", timeout=120,
                             headers={"Authorization": f"Bearer {token or self.token}"}, **kw)

    def chat(self, model: str, **kw: Any) -> httpx.Response:
        return self.call("POST", "/chat/completions", json={
            "model": model, "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 12,
            "temperature": 0, "random_seed": 1}, **kw)


def fit_sentiment_head(encoder_entry: ModelEntry, settings: Settings, path: Path) -> None:
    """One multi-label target (positive, negative) fitted by ``training.heads`` on the encoder's embeddings."""
    manager = EngineManager(settings)
    try:
        encoder = asyncio.run(manager.embedding(encoder_entry))
        x = np.asarray(asyncio.run(encoder.embed(POSITIVE + NEGATIVE)).vectors, dtype=np.float32)
        dims = encoder.dimensions
    finally:
        manager.close()
    y = np.array([[1, 0]] * len(POSITIVE) + [[0, 1]] * len(NEGATIVE))
    fitted = fit_head(x, y, seed=0, hidden=16, folds=4, seeds=1)
    save_head(ClassifierHead(
        encoder=EncoderInfo("sentence-transformers/all-MiniLM-L6-v2", dims, encoder_entry.max_context_length),
        features=(FeatureSpec("embedding", dims),),
        targets=(ClassifierTarget("sentiment", LABELS, multi_label=True),),
        weights={"sentiment": fitted.weight.astype(np.float32)},
        biases={"sentiment": fitted.bias.astype(np.float32)},
        hidden={"sentiment": (fitted.hidden_weight.astype(np.float32), fitted.hidden_bias.astype(np.float32))},
        thresholds=dict(zip(LABELS, fitted.thresholds, strict=True)),
        training={"examples": len(y), "note": "tests/e2e/test_fine_tuned_serving.py"}), path)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("ftserve") / "data"
    chat = next(m for m in default_models() if m.id == "smollm2-135m-instruct")
    encoder = next(m for m in default_models() if m.engine == "sentence-transformers")
    settings = Settings(data_dir=data_dir, weights_path=weights_dir, bootstrap_dev_token=False,
                        models=[chat.model_copy(update={"parallel": 2}), encoder])
    (data_dir / "fine_tuning/job-chat").mkdir(parents=True)
    (data_dir / "fine_tuning/job-classifier").mkdir(parents=True)
    assert chat.asset is not None
    shutil.copyfile(resolve_asset(chat.asset, weights_dir), data_dir / "fine_tuning/job-chat/model.gguf")
    fit_sentiment_head(encoder, settings, data_dir / "fine_tuning/job-classifier/head.safetensors")
    with serving(settings, "ftserve") as (server, services, _):
        token, record = services.tokens.create("tuner", workspace="tuners")
        other, _ = services.tokens.create("other", workspace="others")
        for model_id, job_type, root, artifact in [
                (CHAT_FT, "completion", "ministral-3b-latest", "fine_tuning/job-chat/model.gguf"),
                (CLASSIFIER_FT, "classifier", "ministral-3b-latest", "fine_tuning/job-classifier/head.safetensors")]:
            services.fine_tuned.add(FineTunedModelRecord(
                id=model_id, workspace_id=record.workspace_id, root=root,
                job_id="5d7c9e0a-1b2c-4d3e-8f4a-5b6c7d8e9f00", name=None, description=None, archived=False,
                capabilities=("completion_chat",), max_context_length=2048, created_at=1764892800,
                job_type=job_type, artifact=artifact))
        yield Stack(server.base_url, services, token, other, record.workspace_id)


def test_a_fine_tuned_chat_model_through_its_lifecycle(stack: Stack) -> None:
    artifact = stack.services.settings.data_dir / "fine_tuning/job-chat/model.gguf"
    tuned = stack.chat(CHAT_FT)
    assert tuned.status_code == 200, tuned.text
    body = tuned.json()
    assert body["model"] == CHAT_FT and body["choices"][0]["message"]["content"].strip()
    base = stack.chat("ministral-3b-latest").json()
    assert body["choices"][0]["message"]["content"] == base["choices"][0]["message"]["content"]  # the same weights
    assert CHAT_FT in stack.services.engines.loaded()
    lowcode = stack.chat(CHAT_FT, lowcode=True)
    assert lowcode.status_code == 200 and lowcode.json()["data"]["model"] == CHAT_FT
    assert stack.chat(CHAT_FT, token=stack.other).json()["code"] == "MODEL_NOT_FOUND"

    card = stack.call("GET", f"/models/{CHAT_FT}").json()
    assert (card["type"], card["root"], card["archived"], card["max_context_length"]) == (
        "fine-tuned", "ministral-3b-latest", False, 2048)
    assert card["capabilities"]["completion_chat"] is True

    assert stack.call("POST", f"/fine_tuning/models/{CHAT_FT}/archive").json()["archived"] is True
    refused = stack.chat(CHAT_FT)
    assert refused.status_code == 400 and refused.json()["code"] == "MODEL_ARCHIVED"
    assert "unarchive" in refused.json()["message"]
    assert CHAT_FT not in stack.services.engines.loaded()
    assert stack.call("DELETE", f"/fine_tuning/models/{CHAT_FT}/archive").json()["archived"] is False
    again = stack.chat(CHAT_FT)
    assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"] == \
        body["choices"][0]["message"]["content"]

    deleted = stack.call("DELETE", f"/models/{CHAT_FT}")
    assert deleted.json() == {"id": CHAT_FT, "object": "model", "deleted": True}
    assert stack.chat(CHAT_FT).status_code == 404
    assert not artifact.exists()
    assert CHAT_FT not in stack.services.engines.loaded()
    assert stack.call("DELETE", "/models/ministral-3b-latest").status_code == 403


def test_a_fine_tuned_lora_adapter_is_served_over_its_base(stack: Stack, weights_dir: Path) -> None:
    """An adapter artifact: the base's weights with the adapter applied (llama.cpp's lora_adapters). A zero adapter
    answers exactly as the base; a strongly perturbing one does not."""
    data_dir = stack.services.settings.data_dir
    base_gguf = resolve_asset("smollm2-135m-instruct-q8_0", weights_dir)
    answers = {}
    for name, scale in (("zero", 0.0), ("noisy", 0.5)):
        model_id = f"ft:ministral-3b-latest:{name}:20251205:1c2d3e4f"
        write_random_adapter(base_gguf, data_dir / f"fine_tuning/job-{name}/adapter.gguf", scale=scale)
        stack.services.fine_tuned.add(FineTunedModelRecord(
            id=model_id, workspace_id=stack.workspace_id, root="ministral-3b-latest",
            job_id="5d7c9e0a-1b2c-4d3e-8f4a-5b6c7d8e9f01", name=name, description=None, archived=False,
            capabilities=("completion_chat",), max_context_length=2048, created_at=1764892800,
            artifact=f"fine_tuning/job-{name}/adapter.gguf"))
        r = stack.chat(model_id)
        assert r.status_code == 200, r.text
        answers[name] = r.json()["choices"][0]["message"]["content"]
        assert stack.call("DELETE", f"/models/{model_id}").json()["deleted"] is True
        assert not (data_dir / f"fine_tuning/job-{name}/adapter.gguf").exists()
        assert model_id not in stack.services.engines.loaded()
    base = stack.chat("ministral-3b-latest").json()["choices"][0]["message"]["content"]
    assert answers["zero"] == base
    assert answers["noisy"] != base


def test_a_fine_tuned_classifier_through_its_lifecycle(stack: Stack) -> None:
    head = stack.services.settings.data_dir / "fine_tuning/job-classifier/head.safetensors"
    texts = ["Such a lovely, cheerful afternoon, I adore it.", "This is the worst service I have ever had."]
    r = stack.call("POST", "/classifications", json={"model": CLASSIFIER_FT, "input": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == CLASSIFIER_FT and len(body["results"]) == 2
    good, bad = (result["sentiment"]["scores"] for result in body["results"])
    assert set(good) == set(LABELS)
    assert good["positive"] > good["negative"] and bad["negative"] > bad["positive"]
    chat = stack.call("POST", "/chat/classifications", lowcode=True, json={
        "model": CLASSIFIER_FT, "input": {"messages": [{"role": "user", "content": texts[1]}]}})
    assert chat.status_code == 200, chat.text
    scores = chat.json()["data"]["results"][0]["sentiment"]["scores"]
    assert scores["negative"] > scores["positive"]
    out = stack.call("PATCH", f"/fine_tuning/models/{CLASSIFIER_FT}", json={"name": "sentiment"}).json()
    assert out["model_type"] == "classifier" and out["name"] == "sentiment"
    assert out["classifier_targets"] == [{"name": "sentiment", "labels": list(LABELS), "weight": 1.0,
                                          "loss_function": "multi_class"}]
    assert stack.call("POST", "/classifications", token=stack.other,
                      json={"model": CLASSIFIER_FT, "input": ["x"]}).status_code == 404

    stack.call("POST", f"/fine_tuning/models/{CLASSIFIER_FT}/archive")
    refused = stack.call("POST", "/classifications", json={"model": CLASSIFIER_FT, "input": ["x"]})
    assert refused.status_code == 400 and refused.json()["code"] == "MODEL_ARCHIVED"
    stack.call("DELETE", f"/fine_tuning/models/{CLASSIFIER_FT}/archive")
    served = stack.call("POST", "/classifications", json={"model": CLASSIFIER_FT, "input": texts}).json()
    assert served["results"][0]["sentiment"]["scores"] == pytest.approx(good, abs=1e-4)
    assert stack.call("DELETE", f"/models/{CLASSIFIER_FT}").json()["deleted"] is True
    assert stack.call("POST", "/classifications", json={"model": CLASSIFIER_FT, "input": ["x"]}).status_code == 404
    assert not head.exists()
