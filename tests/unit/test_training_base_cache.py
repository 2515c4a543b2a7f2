"""The converted-base cache: keyed by the GGUF's sha256, converted once, written atomically, and loadable (weights,
tied embeddings, tokenizer and chat template survive the round trip)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mistral_gateway.training import base_cache
from training_support import tiny_llama, tiny_tokenizer

torch = pytest.importorskip("torch")


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replaces the GGUF de-quantization (seconds on a real file) with a tiny random model; records each call."""
    calls: list[Path] = []

    def fake(gguf: Path):
        calls.append(gguf)
        return tiny_llama(seed=len(calls)), tiny_tokenizer(["hello there"])

    monkeypatch.setattr(base_cache, "_from_gguf", fake)
    return calls


def test_a_file_is_converted_once_under_its_sha256(tmp_path: Path, conversions: list[Path]) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF one")
    first = base_cache.converted_base(gguf, tmp_path / "cache")
    assert first.name == hashlib.sha256(b"GGUF one").hexdigest()
    assert base_cache.converted_base(gguf, tmp_path / "cache") == first
    assert conversions == [gguf]
    gguf.write_bytes(b"GGUF two")  # replaced in place: a new conversion, never the stale one
    second = base_cache.converted_base(gguf, tmp_path / "cache")
    assert second != first and len(conversions) == 2
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted([first.name, second.name])


def test_the_cache_loads_back_as_the_converted_model(tmp_path: Path, conversions: list[Path]) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    model, tokenizer = base_cache.load_base(base_cache.converted_base(gguf, tmp_path / "cache"))
    original = tiny_llama(seed=1)
    for (name, want), got in zip(original.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(want, got), name
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # still tied
    assert tokenizer.chat_template == tiny_tokenizer([]).chat_template
    assert tokenizer("hello there")["input_ids"] == tiny_tokenizer(["hello there"])("hello there")["input_ids"]


def test_a_failed_conversion_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(gguf: Path):
        raise ValueError("unsupported architecture")

    monkeypatch.setattr(base_cache, "_from_gguf", broken)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(ValueError, match="unsupported"):
        base_cache.converted_base(gguf, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
