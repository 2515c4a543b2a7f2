"""The GGUF LoRA adapter writer on a random two-layer llama: llama.cpp's metadata, one lora_a/lora_b pair per adapted
base tensor with the base's names and llama.cpp's shapes, q/k rows in llama.cpp's order, and refusal of adapters the
base could not take."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mistral_gateway.training.lora_export import adapter_tensors, permute_rows, read_layout, write_adapter
from training_support import tiny_llama, write_base_gguf

gguf = pytest.importorskip("gguf")
peft = pytest.importorskip("peft")

MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
GGUF_NAMES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


@pytest.fixture
def trained(tmp_path: Path):
    """A base GGUF and a peft model on the same weights with non-zero B (as after training)."""
    import torch

    model = tiny_llama()
    write_base_gguf(model, tmp_path / "base.gguf")
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=list(MODULES)))
    torch.manual_seed(1)
    for name, param in lora.named_parameters():
        if "lora_B" in name:
            param.data.normal_()
    return tmp_path / "base.gguf", lora


def test_adapter_metadata_names_and_llama_cpp_shapes(trained, tmp_path: Path) -> None:
    base, lora = trained
    layout = read_layout(base)
    assert (layout.arch, layout.n_head, layout.n_head_kv, layout.n_blocks) == ("llama", 4, 2, 2)
    out = tmp_path / "adapter.gguf"
    write_adapter(out, adapter_tensors(peft.get_peft_model_state_dict(lora), layout), layout, alpha=8)
    reader = gguf.GGUFReader(out)
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == 8.0
    assert reader.fields["general.architecture"].contents() == "llama"
    tensors = {t.name: tuple(int(d) for d in t.shape) for t in reader.tensors}
    expected = {f"blk.{i}.{n}.weight.lora_{p}" for i in range(2) for n in GGUF_NAMES for p in "ab"}
    assert set(tensors) == expected
    for name, shape in tensors.items():  # ggml order (ne): a is [in, rank], b is [rank, out]; base is [in, out]
        n_in, n_out = layout.shapes[name.rsplit(".", 1)[0]]
        assert shape == ((n_in, 4) if name.endswith("lora_a") else (4, n_out))
    assert not out.with_name("adapter.gguf.tmp").exists()


def test_q_and_k_deltas_follow_llama_cpp_row_order(trained) -> None:
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    base, lora = trained
    state = peft.get_peft_model_state_dict(lora)
    tensors = adapter_tensors(state, read_layout(base))
    unpermute = LlamaTensorProcessor()._reverse_permute_weights
    prefix = "base_model.model.model.layers.1.self_attn"
    for module, heads, gguf_name in (("q_proj", 4, "attn_q"), ("k_proj", 2, "attn_k")):
        b = state[f"{prefix}.{module}.lora_B.weight"].numpy()
        written = tensors[f"blk.1.{gguf_name}.weight.lora_b"]
        assert not np.allclose(written, b)  # really reordered
        # transformers un-permutes what it loads from a GGUF: the adapter's rows undo to peft's exactly
        assert np.array_equal(unpermute(written, 4, heads), b)
    v = state[f"{prefix}.v_proj.lora_B.weight"].numpy()
    assert np.array_equal(tensors["blk.1.attn_v.weight.lora_b"], v)
    a = state[f"{prefix}.q_proj.lora_A.weight"].numpy()
    assert np.array_equal(tensors["blk.1.attn_q.weight.lora_a"], a)  # A is never permuted or transposed


def test_permutation_acts_on_the_dense_delta_as_on_b() -> None:
    rng = np.random.default_rng(0)
    b, a = rng.standard_normal((16, 3)), rng.standard_normal((3, 8))
    assert np.allclose(permute_rows(b, 4) @ a, permute_rows(b @ a, 4))


def test_other_architectures_keep_peft_row_order(trained, tmp_path: Path) -> None:
    _, lora = trained
    qwen = tmp_path / "qwen.gguf"
    write_base_gguf(tiny_llama(), qwen, arch="qwen2")
    state = peft.get_peft_model_state_dict(lora)
    tensors = adapter_tensors(state, read_layout(qwen))
    b = state["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"].numpy()
    assert np.array_equal(tensors["blk.0.attn_q.weight.lora_b"], b)


def test_adapters_the_base_cannot_take_are_refused(trained, tmp_path: Path) -> None:
    base, lora = trained
    layout = read_layout(base)
    state = peft.get_peft_model_state_dict(lora)
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    with pytest.raises(ValueError, match="do not fit"):
        adapter_tensors({**state, key: state[key][:, :-1]}, layout)
    deep = "base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight"
    with pytest.raises(ValueError, match="no tensor"):
        adapter_tensors({deep: state[key]}, layout)
    with pytest.raises(ValueError, match="not a LoRA tensor"):
        adapter_tensors({"base_model.model.model.norm.weight": state[key]}, layout)
