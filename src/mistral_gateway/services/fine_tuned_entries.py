"""Building the ``ModelEntry`` of a fine-tuned model from its record and its file (services.fine_tuned resolves
and caches them): the base's serving settings over a GGUF, or a classifier head over its encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mistral_gateway.config import ModelEntry
from mistral_gateway.engines.head_format import HEADER_KEY
from mistral_gateway.engines.manager import kind_of
from mistral_gateway.storage.records import FineTunedModelRecord

__all__ = ["COMPLETION_CAPABILITIES", "classifier_entry", "completion_capabilities", "completion_entry", "embedding",
           "head_header", "is_lora_adapter"]

# What a fine-tuned completion model can do of its base's capabilities (no projector is carried over: no vision)
COMPLETION_CAPABILITIES = ("completion_chat", "completion_fim", "function_calling")


def embedding(entry: ModelEntry) -> bool:
    return entry.engine != "none" and kind_of(entry) == "embedding"


def completion_capabilities(base: ModelEntry) -> list[str]:
    return [c for c in base.capabilities if c in COMPLETION_CAPABILITIES
            and (c != "completion_fim" or base.fim_template)] or ["completion_chat"]


def completion_entry(record: FineTunedModelRecord, path: Path, base: ModelEntry | None) -> ModelEntry:
    """The base's serving settings over the fine-tuned weights; without a base in the catalog, llama.cpp defaults
    with the record's context length."""
    base = base or ModelEntry(id=record.root, max_context_length=record.max_context_length,
                              capabilities=[c for c in record.capabilities if c in COMPLETION_CAPABILITIES])
    return base.model_copy(update={
        "id": record.id, "aliases": [], "name": record.name, "description": record.description, "path": str(path),
        "asset": None, "mmproj": None, "mmproj_asset": None, "routes": [], "created": record.created_at,
        "owned_by": record.workspace_id, "capabilities": completion_capabilities(base)})


def classifier_entry(record: FineTunedModelRecord, path: Path, encoder: ModelEntry) -> ModelEntry:
    return ModelEntry(
        id=record.id, name=record.name, description=record.description,
        engine="fake" if encoder.engine == "fake" else "classifier",  # a fake encoder's catalog: fakes throughout
        path=str(path), encoder=encoder.id, capabilities=["classification"],
        max_context_length=encoder.max_context_length, created=record.created_at, owned_by=record.workspace_id)


def is_lora_adapter(path: Path) -> bool:
    """Whether a completion model's GGUF is a LoRA adapter (``adapter.lora.alpha`` set) rather than whole weights."""
    try:
        import gguf

        return gguf.GGUFReader(path).get_field(gguf.Keys.Adapter.LORA_ALPHA) is not None
    except Exception:  # not a GGUF, or gguf not installed: whole weights, whose load says what is wrong
        return False


def head_header(path: Path) -> dict[str, Any]:
    """The JSON header of a classifier-head file (engines/head_format.py), read without its tensors; {} if none."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as fh:
            raw = (fh.metadata() or {}).get(HEADER_KEY)
        header = json.loads(raw) if raw else {}
    except Exception:  # not a head file: the engine's load says why, with the file's name
        return {}
    return header if isinstance(header, dict) else {}
