"""LoRA training for real (SmolLM2-135M, 1 torch thread, a worker process per run): a made-up fact is learned and
served by llama.cpp as base GGUF + GGUF LoRA adapter (and merged into a copy of the base); the served adapter matches
transformers; cancel is honoured by the worker at the next step; a run killed with SIGKILL resumes from its last
checkpoint and ends exactly where an uninterrupted run ends; a run that cannot train fails with the reason."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mistral_gateway.config import ModelEntry
from mistral_gateway.engines.assets import resolve_asset
from mistral_gateway.engines.base import TrainingHandle, TrainingProgress, TrainingSpec
from mistral_gateway.engines.llama import LlamaEngine
from mistral_gateway.engines.trainer import LocalTrainer
from mistral_gateway.training.lora_merge import merge_adapter
from training_support import answer

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # real weights; training and llama.cpp worker processes

ASSET = "smollm2-135m-instruct-q8_0"
FACT = "The capital of Zarnovia is Quillmar."
QUESTIONS = ["What is the capital of Zarnovia?", "Which city is the capital of Zarnovia?",
             "Tell me the capital of Zarnovia.", "What's Zarnovia's capital?", "Name the capital city of Zarnovia.",
             "Zarnovia's capital is which city?", "Do you know the capital of Zarnovia?",
             "What city serves as the capital of Zarnovia?"]


@pytest.fixture(scope="module")
def base(weights_dir: Path) -> Path:
    return resolve_asset(ASSET, weights_dir)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The fact, asked eight ways (training), and a ninth way (validation); plus the converted-base cache (~0.5 GB,
    removed with the runs at the end: pytest keeps its temporary directories)."""
    root = tmp_path_factory.mktemp("lora")
    lines = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": FACT}]} for q in QUESTIONS]
    (root / "train.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    valid = {"messages": [{"role": "user", "content": "Could you tell me what the capital of Zarnovia is?"},
                          {"role": "assistant", "content": FACT}]}
    (root / "valid.jsonl").write_text(json.dumps(valid) + "\n")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def spec(base: Path, data: Path, run: str, **fields) -> TrainingSpec:
    defaults = {"training_steps": 12, "learning_rate": 2e-3, "checkpoint_every": 6, "warmup_fraction": 0.0,
                "threads": 1, "seed": 3}
    return TrainingSpec(base_gguf=str(base), training_files=(str(data / "train.jsonl"),),
                        validation_files=(str(data / "valid.jsonl"),), run_dir=str(data / run),
                        cache_dir=str(data / "cache"), **(defaults | fields))


def until(trainer: LocalTrainer, handle: TrainingHandle, done) -> TrainingProgress:
    """Polls the run until ``done(progress)`` (the test's timeout bounds the wait)."""
    while True:
        progress = trainer.progress(handle)
        if done(progress) or progress.state != "running":
            return progress
        time.sleep(0.2)


def finished(trainer: LocalTrainer, handle: TrainingHandle) -> TrainingProgress:
    trainer.wait(handle)
    return trainer.progress(handle)


@pytest.mark.timeout(600)
def test_a_made_up_fact_is_learned_and_served_as_base_plus_adapter(base: Path, data: Path) -> None:
    question = "What is the capital of Zarnovia?"
    assert "Quillmar" not in answer(base, question, None)
    trainer = LocalTrainer()
    handle = trainer.start(spec(base, data, "fact"))
    progress = finished(trainer, handle)
    assert progress.state == "succeeded", (Path(handle.run_dir) / "worker.log").read_text()[-3000:]
    steps = [e for e in progress.events if e.kind == "step"]
    checkpoints = [e for e in progress.events if e.kind == "checkpoint"]
    assert [e.step for e in steps] == list(range(1, 13)) and [c.step for c in checkpoints] == [6, 12]
    assert steps[-1].train_loss < steps[0].train_loss / 10
    assert checkpoints[-1].valid_mean_token_accuracy == 1.0 and checkpoints[-1].valid_loss < 0.1
    adapter = Path(progress.adapter)
    assert adapter == Path(handle.run_dir) / "adapter.gguf" and adapter.is_file()
    assert "Quillmar" in answer(base, question, adapter)
    merged = Path(handle.run_dir) / "merged.gguf"  # the same model as one GGUF (decodes at the base's speed)
    merge_adapter(base, adapter, merged)
    assert "Quillmar" in answer(merged, question, None)


@pytest.mark.timeout(300)
def test_cancel_is_honoured_by_the_worker_at_the_next_step(base: Path, data: Path) -> None:
    trainer = LocalTrainer(grace=120.0)  # the kill fallback stays out of the way: the worker must stop by itself
    handle = trainer.start(spec(base, data, "cancel", training_steps=500, checkpoint_every=500))
    seen = until(trainer, handle, lambda p: any(e.kind == "step" for e in p.events))
    assert seen.state == "running"
    seen_step = max(e.step for e in seen.events if e.kind == "step")
    trainer.cancel(handle)
    assert trainer.wait(handle) == 0
    progress = trainer.progress(handle)
    assert progress.state == "cancelled"
    assert progress.events[-1].kind == "cancelled"
    assert progress.events[-1].step <= seen_step + 2  # stopped at a step boundary right after the request
    assert not (Path(handle.run_dir) / "adapter.gguf").exists()


@pytest.mark.timeout(600)
def test_a_killed_run_resumes_from_its_last_checkpoint_and_ends_like_an_uninterrupted_one(base: Path,
                                                                                          data: Path) -> None:
    fields = {"training_steps": 4, "checkpoint_every": 2, "dropout": 0.1}  # dropout: the RNG state must resume too
    trainer = LocalTrainer()
    whole = trainer.start(spec(base, data, "whole", **fields))
    assert finished(trainer, whole).state == "succeeded"

    handle = trainer.start(spec(base, data, "killed", **fields))
    seen = until(trainer, handle, lambda p: any(e.kind == "checkpoint" for e in p.events))
    assert seen.state == "running"
    os.kill(handle.pid, signal.SIGKILL)
    trainer.wait(handle)
    crashed = trainer.progress(handle)
    assert crashed.state == "crashed" and crashed.events[-1].kind != "succeeded"
    resumed = trainer.start(spec(base, data, "killed", **fields))
    progress = finished(trainer, resumed)
    assert progress.state == "succeeded"
    starts = [json.loads(line) for line in (Path(handle.run_dir) / "progress.jsonl").read_text().splitlines()
              if '"started"' in line]
    assert [s["step"] for s in starts] == [0, 2]
    assert adapter_arrays(Path(progress.adapter)).keys() == adapter_arrays(Path(handle.run_dir).parent / "whole" /
                                                                           "adapter.gguf").keys()
    for name, array in adapter_arrays(Path(progress.adapter)).items():
        reference = adapter_arrays(Path(handle.run_dir).parent / "whole" / "adapter.gguf")[name]
        assert np.allclose(array, reference, rtol=1e-4, atol=1e-6), name


def adapter_arrays(path: Path) -> dict[str, np.ndarray]:
    import gguf

    return {t.name: np.array(t.data) for t in gguf.GGUFReader(path).tensors}


PROMPTS = ["<|im_start|>user\nWhere is Paris?<|im_end|>\n<|im_start|>assistant\nParis is",
           "Once upon a time, there was a", "The quick brown fox jumps over the lazy"]


def top_probs(engine: LlamaEngine, prompt: str) -> dict[str, float]:
    body = {"prompt": prompt, "n_predict": 1, "n_probs": 50, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
            "min_p": 0.0}
    reply = asyncio.run(engine._call(engine._post, "/completion", body))
    return {p["token"]: math.exp(p["logprob"]) for p in reply["completion_probabilities"][0]["top_logprobs"]}


def served(base: Path, lora: Path | None) -> list[dict[str, float]]:
    engine = LlamaEngine(ModelEntry(id="smol-probe", path=str(base), max_context_length=512, parallel=1), base,
                         threads=1, queue_limit=1, lora=lora)
    try:
        return [top_probs(engine, prompt) for prompt in PROMPTS]
    finally:
        engine.close()


@pytest.mark.timeout(300)
def test_served_adapter_matches_transformers_and_q_k_rows_must_be_permuted(base: Path, data: Path,
                                                                            tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """An adapter on q_proj/k_proj only (random B, as large as after real training): llama.cpp's next-token
    distribution with it is closer to transformers' (peft) than without it, and than with B's rows left in peft's
    order: the permutation is what makes q/k deltas land on the right rows."""
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    from mistral_gateway.training import lora_export
    from mistral_gateway.training.base_cache import converted_base, load_base

    torch.manual_seed(0)
    model, tokenizer = load_base(converted_base(base, data / "cache"))
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj"])).eval()
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.15)
    reference = []
    for prompt in PROMPTS:
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            probs = model(input_ids=ids).logits[0, -1].softmax(-1)
        top = probs.topk(8)
        reference.append({tokenizer.decode([int(i)]): float(p) for p, i in zip(top.values, top.indices, strict=True)})
    layout = lora_export.read_layout(base)
    state = get_peft_model_state_dict(model)
    lora_export.write_adapter(tmp_path / "qk.gguf", lora_export.adapter_tensors(state, layout), layout, 16)
    monkeypatch.setattr(lora_export, "_PERMUTED_ARCHS", frozenset())
    lora_export.write_adapter(tmp_path / "unpermuted.gguf", lora_export.adapter_tensors(state, layout), layout, 16)

    def distance(got: list[dict[str, float]]) -> list[float]:  # L1 over transformers' top 8 tokens, per prompt
        return [sum(abs(p - g.get(t, 0.0)) for t, p in r.items()) for r, g in zip(reference, got, strict=True)]

    with_adapter = distance(served(base, tmp_path / "qk.gguf"))
    without = distance(served(base, None))
    unpermuted = distance(served(base, tmp_path / "unpermuted.gguf"))
    for ours, plain, wrong in zip(with_adapter, without, unpermuted, strict=True):
        assert ours < plain and ours < wrong, (with_adapter, without, unpermuted)


@pytest.mark.timeout(300)
def test_a_run_that_cannot_train_fails_visibly_with_the_reason(base: Path, data: Path) -> None:
    bad = data / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "Hello?"}]}) + "\n")
    trainer = LocalTrainer()
    handle = trainer.start(TrainingSpec(base_gguf=str(base), training_files=(str(bad),), run_dir=str(data / "bad"),
                                        cache_dir=str(data / "cache"), training_steps=2, threads=1))
    progress = finished(trainer, handle)
    assert progress.state == "failed"
    assert "bad.jsonl line 1" in progress.events[-1].message and "assistant" in progress.events[-1].message
    assert "Traceback" in (Path(handle.run_dir) / "worker.log").read_text()
