"""An adapter merged into its base GGUF: adapted tensors become ``W + alpha/rank * B @ A`` (Q8_0), every other tensor
and the metadata are copied unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mistral_gateway.training.lora_export import adapter_tensors, read_layout, write_adapter
from mistral_gateway.training.lora_merge import lora_deltas, merge_adapter, read_adapter
from training_support import tiny_llama, write_base_gguf

gguf = pytest.importorskip("gguf")
peft = pytest.importorskip("peft")


def test_merged_tensors_are_base_plus_scaled_delta_and_the_rest_is_copied(tmp_path: Path) -> None:
    import torch

    base = tmp_path / "base.gguf"
    model = tiny_llama()
    write_base_gguf(model, base)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["v_proj", "down_proj"]))
    torch.manual_seed(2)
    for name, param in lora.named_parameters():
        if "lora_B" in name:
            param.data.normal_()
    layout = read_layout(base)
    tensors = adapter_tensors(peft.get_peft_model_state_dict(lora), layout)
    write_adapter(tmp_path / "adapter.gguf", tensors, layout, alpha=8)
    read_back, alpha = read_adapter(tmp_path / "adapter.gguf")
    assert alpha == 8.0 and all(np.array_equal(read_back[n], tensors[n]) for n in tensors)
    merge_adapter(base, tmp_path / "adapter.gguf", tmp_path / "merged.gguf")

    source = {t.name: t for t in gguf.GGUFReader(base).tensors}
    merged_reader = gguf.GGUFReader(tmp_path / "merged.gguf")
    merged = {t.name: t for t in merged_reader.tensors}
    assert merged.keys() == source.keys()
    deltas = lora_deltas(tensors, alpha=8)
    assert set(deltas) == {f"blk.{i}.{n}.weight" for i in range(2) for n in ("attn_v", "ffn_down")}
    for name, tensor in merged.items():
        if name in deltas:
            assert tensor.tensor_type == gguf.GGMLQuantizationType.Q8_0
            want = np.array(source[name].data) + deltas[name]
            got = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
            assert np.abs(got - want).max() <= np.abs(want).max() / 100  # Q8_0: 1/127 of each block's range
            assert np.abs(deltas[name]).max() > np.abs(want).max() / 10  # the delta is far above that error
        else:
            assert tensor.tensor_type == source[name].tensor_type
            assert np.array_equal(np.array(tensor.data), np.array(source[name].data))
    assert merged_reader.fields["llama.attention.head_count_kv"].contents() == 2
    assert not (tmp_path / "merged.gguf.tmp").exists()
    with pytest.raises(ValueError, match="not a LoRA adapter"):
        read_adapter(base)


def test_deltas_scale_by_alpha_over_rank() -> None:
    a, b = np.ones((2, 3), np.float32), np.ones((4, 2), np.float32)
    delta = lora_deltas({"x.weight.lora_a": a, "x.weight.lora_b": b}, alpha=6)["x.weight"]
    assert delta.shape == (4, 3) and np.all(delta == 6.0)  # (B @ A) = 2 everywhere, times 6 / 2
