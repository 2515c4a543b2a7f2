"""training.base_tokenizer: a cached conversion's tokenizer is loaded without converting again; a base that cannot be
converted fails with the child process's last word (the conversion itself runs on real weights in the slow tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mistral_gateway.training.base_cache import file_sha256
from mistral_gateway.training.base_tokenizer import base_tokenizer
from training_support import tiny_tokenizer


def test_a_cached_conversion_gives_its_tokenizer(tmp_path: Path) -> None:
    gguf = tmp_path / "base.gguf"
    gguf.write_bytes(b"GGUF not really")
    cached = tmp_path / "bases" / file_sha256(gguf)
    tiny_tokenizer(["hello world"]).save_pretrained(cached)
    (cached / "config.json").write_text(json.dumps({"model_type": "llama"}))
    tokenizer = base_tokenizer(gguf, tmp_path / "bases")
    assert tokenizer("hello world", add_special_tokens=False)["input_ids"] == tiny_tokenizer(["hello world"])(
        "hello world", add_special_tokens=False)["input_ids"]


def test_a_base_that_cannot_be_converted_fails_with_the_reason(tmp_path: Path) -> None:
    gguf = tmp_path / "broken.gguf"
    gguf.write_bytes(b"not a gguf at all")
    with pytest.raises(RuntimeError, match=r"preparing broken\.gguf for training failed: .+"):
        base_tokenizer(gguf, tmp_path / "bases", timeout=300)
    assert not list((tmp_path / "bases").glob("[0-9a-f]*"))  # no half-written cache
