"""Tiny stand-ins for the training unit tests: a word-level tokenizer with a ChatML template (offsets work like a
real fast tokenizer's) and a random two-layer llama, so data rendering, export and caching run without weights."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIAL = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]


def tiny_tokenizer(corpus: Iterable[str]) -> Any:
    """Every word and punctuation mark of ``corpus`` (and the roles) is one token; anything else is <unk>."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for text in [*corpus, "system user assistant"] for w in re.findall(r"\w+|[^\w\s]", text)})
    vocab = {token: i for i, token in enumerate([*SPECIAL, *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                        eos_token="<|im_end|>", additional_special_tokens=SPECIAL[2:])
    tokenizer.chat_template = CHATML
    return tokenizer


def tiny_llama(vocab_size: int = 64, seed: int = 0) -> Any:
    """A random llama: 2 layers, hidden 32, 4 query heads over 2 key/value heads (grouped, like SmolLM2)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def write_base_gguf(model: Any, path: Any, arch: str = "llama") -> None:
    """``model``'s weights as a base GGUF (F32, HF names mapped with gguf's table), with the head counts the adapter
    export reads: enough for the export's name and shape checks (not a model llama.cpp could run)."""
    import gguf

    config = model.config
    names = gguf.get_tensor_name_map({v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch], config.num_hidden_layers)
    writer = gguf.GGUFWriter(path, arch)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    for name, tensor in model.state_dict().items():
        mapped = names.get_name(name, try_suffixes=(".weight",))
        if mapped is not None and name != "lm_head.weight":
            writer.add_tensor(mapped, tensor.detach().float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def answer(gguf: Path, question: str, lora: Path | None = None) -> str:
    """A greedy 16-token llama.cpp answer of ``gguf`` (plus a LoRA adapter) to ``question`` (real weights: slow
    tests only)."""
    from mistral_gateway.config import ModelEntry
    from mistral_gateway.engines.base import ChatMessage, SamplingParams
    from mistral_gateway.engines.llama import LlamaEngine

    async def ask() -> str:
        entry = ModelEntry(id="lora-check", path=str(gguf), max_context_length=512, parallel=1)
        engine = LlamaEngine(entry, gguf, threads=1, queue_limit=1, lora=lora)
        try:
            prompt = await engine.render([ChatMessage(role="user", content=question)])
            return (await engine.complete(prompt, SamplingParams(max_tokens=16, temperature=0, seed=0))).text
        finally:
            engine.close()

    return asyncio.run(ask())
