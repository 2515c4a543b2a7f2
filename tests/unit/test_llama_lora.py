"""A fine-tuned model's engine: the LoRA adapter path reaches llama.cpp's parameters (scale 1), and a missing adapter
is refused when the engine is built, not at the first request."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mistral_gateway.config import ModelEntry
from mistral_gateway.engines.base import EngineError
from mistral_gateway.engines.llama import LlamaEngine
from mistral_gateway.engines.worker_process import LoopbackServer


def build(tmp_path: Path, lora: Path | None) -> list[dict[str, Any]]:
    configs: list[dict[str, Any]] = []
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF")
    engine = LlamaEngine(ModelEntry(id="ft:smol:x", path=str(weights), parallel=1), weights, threads=1,
                         queue_limit=1, lora=lora, server_factory=lambda config, model_id: configs.append(config) or
                         LoopbackServer("http://127.0.0.1:9", config["key"], model_id))
    engine.close()
    return configs


def test_the_adapter_reaches_llama_cpp_params(tmp_path: Path) -> None:
    pytest.importorskip("xllamacpp")
    from mistral_gateway.engines.llama_worker import build_params

    adapter = tmp_path / "adapter.gguf"
    adapter.write_bytes(b"GGUF")
    config = build(tmp_path, adapter)[0]
    assert config["lora"] == str(adapter)
    cpus = os.sched_getaffinity(0)
    try:  # importing xllamacpp pins the importing thread to one CPU
        params = build_params(config)
        plain = build_params({k: v for k, v in config.items() if k != "lora"})
    finally:
        os.sched_setaffinity(0, cpus)
    assert [(a.path, a.scale) for a in params.lora_adapters] == [(str(adapter), 1.0)]
    assert list(plain.lora_adapters) == []
    assert "lora" not in build(tmp_path, None)[0]


def test_a_missing_adapter_is_refused_at_build(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"LoRA adapter .* does not exist"):
        build(tmp_path, tmp_path / "gone.gguf")
