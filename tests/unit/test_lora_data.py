"""Training lines to tokens and labels: the chat template renders the conversation, only assistant turns (with their
end marker) carry labels, plain text trains on everything, the batch order is a pure function of the step."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from mistral_gateway.training.lora_data import (
    IGNORE,
    Fim,
    batch_indices,
    collate,
    encode_line,
    fim_line,
    load_examples,
)
from training_support import tiny_tokenizer

CORPUS = ["What is the capital of Zarnovia ?", "The capital of Zarnovia is Quillmar .", "Be brief .", "And Oslo ?",
          "Oslo is in Norway .", "plain words to learn"]

OSLO = {"messages": [{"role": "user", "content": "And Oslo?"}, {"role": "assistant", "content": "Oslo is in Norway."}]}


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer(CORPUS)


def learned(example, tokenizer) -> list[str]:
    return tokenizer.convert_ids_to_tokens([t for t in example.labels if t != IGNORE])


def test_only_assistant_turns_and_their_end_marker_carry_labels(tokenizer) -> None:
    line = {"messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "What is the capital of Zarnovia?"},
                         {"role": "assistant", "content": "The capital of Zarnovia is Quillmar."},
                         {"role": "user", "content": "And Oslo?"},
                         {"role": "assistant", "content": "Oslo is in Norway."}]}
    example = encode_line(line, tokenizer, seq_len=256)
    assert learned(example, tokenizer) == ["The", "capital", "of", "Zarnovia", "is", "Quillmar", ".", "<|im_end|>",
                                           "Oslo", "is", "in", "Norway", ".", "<|im_end|>"]
    assert len(example.labels) == len(example.input_ids)
    # a labelled position holds its own token (the model shifts them when it computes the loss)
    assert all(label in (IGNORE, token) for label, token in zip(example.labels, example.input_ids, strict=True))
    rendered = tokenizer.apply_chat_template(line["messages"], tokenize=False)
    assert tokenizer.decode(example.input_ids) == tokenizer.decode(tokenizer(rendered, add_special_tokens=False)
                                                                   ["input_ids"])


def test_content_chunks_are_joined_and_plain_text_trains_on_every_token(tokenizer) -> None:
    chunks = {"messages": [{"role": "user", "content": [{"type": "text", "text": "And Oslo?"}]},
                           {"role": "assistant", "content": [{"type": "text", "text": "Oslo is "},
                                                             {"type": "text", "text": "in Norway."}]}]}
    assert learned(encode_line(chunks, tokenizer, 64), tokenizer) == ["Oslo", "is", "in", "Norway", ".", "<|im_end|>"]
    text = encode_line({"text": "plain words to learn"}, tokenizer, 64)
    assert text.labels == text.input_ids and len(text.input_ids) == 4


def test_seq_len_truncates_ids_and_labels_together(tokenizer) -> None:
    line = OSLO
    full = encode_line(line, tokenizer, 256)
    cut = encode_line(line, tokenizer, 10)
    assert cut.input_ids == full.input_ids[:10] and cut.labels == full.labels[:10]


@pytest.mark.parametrize("line, reason", [
    ({"messages": [{"role": "user", "content": "And Oslo?"}]}, "assistant"),
    ({"prompt": "x"}, "'messages' or 'text'"),
    ({"messages": [{"content": "x"}]}, "role"),
])
def test_lines_without_anything_to_learn_are_refused(tokenizer, line, reason) -> None:
    with pytest.raises(ValueError, match=reason):
        encode_line(line, tokenizer, 64)


def test_load_examples_names_the_bad_line_and_drops_lines_truncated_to_nothing(tokenizer, tmp_path: Path) -> None:
    good = OSLO
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps({"text": "plain words"}) + "\n")
    assert len(load_examples([path], tokenizer, 64)) == 2
    # at 4 tokens the chat line ends before its assistant turn: nothing to learn, dropped
    assert load_examples([path], tokenizer, 4) == [encode_line({"text": "plain words"}, tokenizer, 4)]
    path.write_text(json.dumps(good) + "\n" + "{not json\n")
    with pytest.raises(ValueError, match=r"train\.jsonl line 2"):
        load_examples([path], tokenizer, 64)


def test_batch_order_covers_each_example_once_per_epoch_and_depends_only_on_the_step() -> None:
    steps = [batch_indices(step, 4, 10, seed=7) for step in range(5)]  # 20 positions = 2 epochs of 10
    flat = [i for batch in steps for i in batch]
    assert Counter(flat[:10]) == Counter(range(10)) and Counter(flat[10:]) == Counter(range(10))
    assert flat[:10] != flat[10:]  # each epoch has its own order
    assert batch_indices(3, 4, 10, seed=7) == steps[3]
    assert batch_indices(0, 4, 10, seed=8) != steps[0]


def test_collate_pads_right_and_ignores_padding(tokenizer) -> None:
    a = encode_line({"text": "plain words"}, tokenizer, 64)
    b = encode_line({"text": "plain words to learn"}, tokenizer, 64)
    batch = collate([a, b], pad_id=1)
    assert batch["input_ids"].tolist()[0] == [*a.input_ids, 1, 1]
    assert batch["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch["labels"].tolist()[0] == [*a.labels, IGNORE, IGNORE]


FIM = Fim("<|fim_prefix|>{prompt}<|fim_suffix|>{suffix}<|fim_middle|>", ratio=1.0, seed=5)


def test_fim_lines_cut_the_text_in_three_and_learn_only_the_middle(tokenizer) -> None:
    text = "def f(x): return {x: 1}"  # braces survive the template (no str.format)
    line = fim_line(text, FIM, index=3, eos="<|im_end|>")
    assert line == fim_line(text, FIM, index=3, eos="<|im_end|>")  # a seeded draw per line
    assert line != fim_line(text, FIM, index=4, eos="<|im_end|>")
    prompt, middle = line["fim_prompt"], line["fim_middle"]
    prefix, rest = prompt.removeprefix("<|fim_prefix|>").split("<|fim_suffix|>")
    suffix = rest.removesuffix("<|fim_middle|>")
    assert middle.endswith("<|im_end|>") and prefix + middle.removesuffix("<|im_end|>") + suffix == text
    assert middle.removesuffix("<|im_end|>")  # never empty
    example = encode_line(line, tokenizer, 256)
    offsets = tokenizer(prompt + middle, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert [label != IGNORE for label in example.labels] == [start >= len(prompt) for start, _ in offsets]
    assert example.labels[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_fim_ratio_picks_a_share_of_text_lines_and_leaves_chat_lines_alone(tokenizer, tmp_path: Path) -> None:
    assert fim_line("plain words", Fim(FIM.template, ratio=0.0), 1, "") == {"text": "plain words"}
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps({"text": f"plain words to learn {n}"}) + "\n" for n in range(40))
                    + json.dumps(OSLO) + "\n")
    half = Fim(FIM.template, ratio=0.5, seed=1)
    examples = load_examples([path], tokenizer, 64, half)
    plain = [encode_line({"text": f"plain words to learn {n}"}, tokenizer, 64) for n in range(40)]
    changed = sum(e != p for e, p in zip(examples, plain, strict=False))
    assert 8 <= changed <= 32  # about half (40 seeded draws)
    assert examples[-1] == encode_line(OSLO, tokenizer, 64)
    assert load_examples([path], tokenizer, 64, half) == examples
