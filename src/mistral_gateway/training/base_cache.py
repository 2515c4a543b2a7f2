"""A base GGUF converted once for training: transformers de-quantizes it (``gguf_file=``) and the result is kept as
safetensors with its config and tokenizer under ``<cache_dir>/<sha256 of the GGUF>/``.

Content-addressed, so a replaced GGUF never trains against a stale conversion; written to a temporary directory and
renamed into place, so a crash mid-conversion leaves no half-written cache that a later run would trust.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["converted_base", "file_sha256", "load_base"]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def converted_base(gguf: Path, cache_dir: Path) -> Path:
    """The cached conversion of ``gguf`` (made now if missing)."""
    target = cache_dir / file_sha256(gguf)
    if (target / "config.json").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".convert-", dir=cache_dir))
    try:
        _save(*_from_gguf(gguf), scratch)
        (scratch / "source.txt").write_text(f"{gguf.name}\n", encoding="utf-8")
        try:
            os.rename(scratch, target)
        except OSError:  # another run converted the same file first: theirs is as good
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def load_base(directory: Path) -> tuple[Any, Any]:
    """The converted model (float32, for CPU training) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    return model, tokenizer


def _save(model: Any, tokenizer: Any, directory: Path) -> None:
    from safetensors.torch import save_model

    # transformers refuses save_pretrained on a model it loaded from GGUF (it counts as quantized, though the weights
    # are plain float32 by now): write the config without that marker and the weights ourselves (save_model drops
    # the tied lm_head copy; loading re-ties it from the config)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(directory)
    save_model(model, str(directory / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(directory)


def _from_gguf(gguf: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    return model, tokenizer
