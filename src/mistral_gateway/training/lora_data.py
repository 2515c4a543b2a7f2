"""Training lines to token ids and labels for LoRA.

A chat line ``{"messages": [...]}`` is rendered with the model's own chat template and trains on the assistant
turns only (every other token's label is -100, which the loss ignores); a ``{"text": "..."}`` line trains on all its
tokens. Assistant spans are found in characters (the template rendered up to the turn with the generation prompt,
then with the turn) and mapped to tokens through the tokenizer's offsets, so merges across a boundary cannot shift
the mask. Text lines can be turned into fill-in-the-middle examples (``Fim``, the spec's ``fim_ratio``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["IGNORE", "Example", "Fim", "batch_indices", "collate", "encode_line", "fim_line", "load_examples"]

IGNORE = -100


@dataclass(frozen=True, slots=True)
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE where no loss is taken


@dataclass(frozen=True, slots=True)
class Fim:
    """Fill-in-the-middle for text lines: a share ``ratio`` of them (chosen by a seeded draw per line) is cut at two
    random points and rendered with the model's ``template`` (the catalog's ``fim_template``); the loss is on the
    middle and the end-of-sequence token only."""

    template: str
    ratio: float
    seed: int = 0


def load_examples(paths: Iterable[str | Path], tokenizer: Any, seq_len: int, fim: Fim | None = None) -> list[Example]:
    """Every line of every file, in order; a line with nothing to learn (all masked after truncation) is dropped.
    Lines were validated before the job started, so a malformed one here is an error, not a skip."""
    examples = []
    index = 0
    for path in paths:
        with Path(path).open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                index += 1
                try:
                    record = json.loads(line)
                    if fim is not None and isinstance(record, dict) and isinstance(record.get("text"), str):
                        record = fim_line(record["text"], fim, index, tokenizer.eos_token or "")
                    example = encode_line(record, tokenizer, seq_len)
                except (ValueError, TypeError, KeyError) as exc:
                    raise ValueError(f"{Path(path).name} line {number}: {exc}") from exc
                if any(label != IGNORE for label in example.labels[1:]):
                    examples.append(example)
    return examples


def encode_line(record: dict[str, Any], tokenizer: Any, seq_len: int) -> Example:
    if "messages" in record:
        messages = [_message(m) for m in record["messages"]]
        text, spans = render_chat(messages, tokenizer)
    elif isinstance(record.get("fim_prompt"), str) and isinstance(record.get("fim_middle"), str):
        text = record["fim_prompt"] + record["fim_middle"]
        spans = [(len(record["fim_prompt"]), len(text))]
    elif isinstance(record.get("text"), str):
        text, spans = record["text"], [(0, len(record["text"]))]
    else:
        raise ValueError("a line needs 'messages' or 'text'")
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"][:seq_len], encoded["offset_mapping"][:seq_len]
    labels = [token if _inside(offset, spans) else IGNORE for token, offset in zip(ids, offsets, strict=True)]
    return Example(list(ids), labels)


def render_chat(messages: list[dict[str, Any]], tokenizer: Any) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(messages[: index + 1], tokenize=False)
        if not (text.startswith(through) and through.startswith(before)):
            raise ValueError("the chat template does not render the conversation as a growing prefix")
        spans.append((len(before), len(through)))
    if not spans:
        raise ValueError("a chat line needs at least one assistant message")
    return text, spans


def fim_line(text: str, fim: Fim, index: int, eos: str) -> dict[str, Any]:
    """``{"text": ...}`` unchanged, or (for a ``fim.ratio`` share of lines) its FIM rendering."""
    import random

    draw = random.Random(fim.seed * 1_000_003 + index)  # noqa: S311 - a data transformation, not a secret
    if draw.random() >= fim.ratio or len(text) < 3:
        return {"text": text}
    start, end = sorted(draw.sample(range(1, len(text)), 2))
    # replace, not format: code is full of braces
    prompt = fim.template.replace("{prompt}", text[:start]).replace("{suffix}", text[end:])
    return {"fim_prompt": prompt, "fim_middle": text[start:end] + eos}


def _message(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("role"), str):
        raise ValueError("each message needs a 'role'")
    content = raw.get("content") or ""
    if isinstance(content, list):  # Mistral content chunks: the text ones, joined
        content = "".join(c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text")
    message = {"role": raw["role"], "content": content}
    for key in ("tool_calls", "tool_call_id", "name"):
        if raw.get(key) is not None:
            message[key] = raw[key]
    return message


def _inside(offset: Sequence[int], spans: list[tuple[int, int]]) -> bool:
    start, end = offset
    return end > start and any(lo <= start < hi for lo, hi in spans)


def batch_indices(step: int, batch_size: int, count: int, seed: int) -> list[int]:
    """The examples of optimizer step ``step`` (0-based): consecutive slices of one seeded permutation per epoch, a
    pure function of the step, so a resumed run sees exactly the batches an uninterrupted one would."""
    import random

    indices = []
    for position in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(position, count)
        order = list(range(count))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)  # noqa: S311 - a data order, not a secret
        indices.append(order[offset])
    return indices


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors: input_ids, attention_mask, labels (padding is ignored by the loss)."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = [e.input_ids + [pad_id] * (width - len(e.input_ids)) for e in examples]
    labels = [e.labels + [IGNORE] * (width - len(e.labels)) for e in examples]
    mask = [[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in examples]
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels)}
