"""A generated classifier fine-tuning dataset with two targets, clearly separable by topic words, for the tests, the
benchmark and the documentation's example: ``topic`` (single-label: sports, cooking, finance) and ``mentions``
(multi-label: animal, color; a line may mention both or neither). Lines are the JSONL the jobs API takes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from mistral_gateway.engines.base import ClassifierTargetSpec

__all__ = ["TARGETS", "sample_lines", "write_sample"]

TARGETS = (ClassifierTargetSpec("topic", ("sports", "cooking", "finance")),
           ClassifierTargetSpec("mentions", ("animal", "color"), multi_label=True))

_TOPICS = {
    "sports": (["The striker", "Our goalkeeper", "The tennis champion", "The marathon runner", "The home team",
                "The coach", "The basketball captain", "The cyclist"],
               ["scored twice in the final minutes of the match", "won the championship after extra time",
                "trained hard before the tournament", "broke the stadium record on the track",
                "lost the semifinal on penalties", "signed a contract with a new football club"]),
    "cooking": (["The chef", "My grandmother", "The baker", "Our cook", "The pastry student", "The restaurant"],
                ["simmered the tomato sauce with garlic and basil", "baked fresh bread in a hot oven",
                 "chopped onions and fried them in butter", "seasoned the soup with salt and pepper",
                 "whisked eggs and flour into a smooth batter", "roasted vegetables for the dinner recipe"]),
    "finance": (["The central bank", "The investor", "Our accountant", "The stock market", "The bank",
                 "The company treasurer", "The hedge fund"],
                ["raised interest rates to fight inflation", "reported quarterly earnings above forecasts",
                 "sold the shares after the dividend was cut", "refinanced the mortgage at a lower rate",
                 "audited the budget and the tax returns", "moved the savings into government bonds"]),
}
_ANIMALS = ["A dog barked nearby.", "A cat was sleeping on the sofa.", "Horses grazed in the field.",
            "A parrot watched from its cage.", "Two rabbits ran across the lawn.", "An owl hooted outside."]
_COLORS = ["Everything was painted bright red.", "The walls were a deep blue.", "She wore a yellow scarf.",
           "The curtains were green and purple.", "The sky turned orange and pink.", "The car was shiny white."]


def sample_lines(count: int, seed: int = 0, *, heldout: bool = False) -> list[dict[str, Any]]:
    """``count`` lines: topics in turn, each mention with probability 0.4 (independently); a line mentioning
    neither labels only ``topic``. ``heldout`` lines are built from sentences training lines never use (the last
    two predicates of each topic and the last two sentences of each mention), so they measure generalisation."""
    rng = random.Random(seed)  # noqa: S311 (sample data, not secrets)
    part = slice(-2, None) if heldout else slice(None, -2)
    topics = list(_TOPICS)
    lines = []
    for i in range(count):
        topic = topics[i % len(topics)]
        subjects, predicates = _TOPICS[topic]
        parts = [f"{rng.choice(subjects)} {rng.choice(predicates[part])}."]
        mentions = []
        if rng.random() < 0.4:
            parts.append(rng.choice(_ANIMALS[part]))
            mentions.append("animal")
        if rng.random() < 0.4:
            parts.append(rng.choice(_COLORS[part]))
            mentions.append("color")
        rng.shuffle(parts)
        labels: dict[str, Any] = {"topic": topic}
        if mentions:  # a line with neither leaves the target out (an empty list of labels is not a line's labels)
            labels["mentions"] = mentions
        lines.append({"text": " ".join(parts), "labels": labels})
    return lines


def write_sample(path: Path, count: int, seed: int = 0, *, heldout: bool = False) -> list[dict[str, Any]]:
    lines = sample_lines(count, seed, heldout=heldout)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return lines
