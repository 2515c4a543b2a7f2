"""The labelled moderation dataset (``data/moderation/*.jsonl``): reading, a stable train/held-out split, and a hash.

The split is a pure function of each line's normalised text (sha256), so it never changes when lines are added,
removed or reordered, and the held-out lines are never seen by training or by the choice of thresholds.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mistral_gateway.engines.base import MODERATION_CATEGORIES

__all__ = ["HELDOUT_PERCENT", "Example", "data_sha256", "is_heldout", "load_examples", "normalise", "split"]

HELDOUT_PERCENT = 20


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    labels: frozenset[str]


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def is_heldout(text: str) -> bool:
    digest = hashlib.sha256(normalise(text).encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < HELDOUT_PERCENT


def load_examples(directory: Path, categories: Sequence[str] = MODERATION_CATEGORIES) -> list[Example]:
    """Every line of every ``*.jsonl`` file, in file-name then line order; unknown labels are an error."""
    examples = []
    for path in sorted(directory.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            item = json.loads(line)
            labels = frozenset(item["labels"])
            if labels - set(categories):
                raise ValueError(f"{path.name}:{number}: unknown labels {sorted(labels - set(categories))}")
            examples.append(Example(item["text"], labels))
    if not examples:
        raise ValueError(f"no examples under {directory}")
    return examples


def split(examples: Iterable[Example]) -> tuple[list[Example], list[Example]]:
    """(train, held-out)."""
    train, heldout = [], []
    for example in examples:
        (heldout if is_heldout(example.text) else train).append(example)
    return train, heldout


def data_sha256(examples: Iterable[Example]) -> str:
    """A hash of the dataset's content, independent of file names and line order."""
    lines = sorted(json.dumps([e.text, sorted(e.labels)], ensure_ascii=False) for e in examples)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
