"""A LoRA adapter merged into a copy of its base GGUF: one model file that decodes as fast as the base.

llama.cpp applies a GGUF adapter unmerged (two extra small matmuls, a scale and an add per adapted projection per
token); on the 135M model that costs up to a third of decode speed (docs/training.md). Merged, each adapted tensor is
``W + alpha/rank * B @ A`` (the adapter's B already in llama.cpp's row order), stored as Q8_0; every other tensor and
all metadata are copied (``engines.requantize``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mistral_gateway.engines.requantize import requantize_gguf

__all__ = ["lora_deltas", "merge_adapter", "read_adapter"]


def lora_deltas(tensors: Mapping[str, np.ndarray], alpha: float) -> dict[str, np.ndarray]:
    """Base tensor name -> its dense update, from ``training.lora_export.adapter_tensors``' output."""
    deltas = {}
    for name, a in tensors.items():
        if name.endswith(".lora_a"):
            base = name.removesuffix(".lora_a")
            b = tensors[base + ".lora_b"]
            deltas[base] = (b.astype(np.float32) @ a.astype(np.float32)) * np.float32(alpha / a.shape[0])
    return deltas


def read_adapter(adapter_gguf: Path) -> tuple[dict[str, np.ndarray], float]:
    """A GGUF LoRA adapter's tensors (numpy order) and its alpha."""
    import gguf

    reader = gguf.GGUFReader(adapter_gguf)
    alpha = reader.get_field(gguf.Keys.Adapter.LORA_ALPHA)
    if alpha is None:
        raise ValueError(f"{adapter_gguf}: not a LoRA adapter (no {gguf.Keys.Adapter.LORA_ALPHA})")
    return {t.name: np.array(t.data, dtype=np.float32) for t in reader.tensors}, float(alpha.contents())


def merge_adapter(base_gguf: Path, adapter_gguf: Path, out: Path) -> None:
    """Writes ``out`` (the base with the adapter merged) atomically: a temporary file renamed into place."""
    tensors, alpha = read_adapter(adapter_gguf)
    scratch = out.with_name(out.name + ".tmp")
    requantize_gguf(base_gguf, scratch, "Q8_0", convert=(), deltas=lora_deltas(tensors, alpha))
    scratch.replace(out)
