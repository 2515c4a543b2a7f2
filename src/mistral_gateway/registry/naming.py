"""Client method names: the rule that derives ``namespace.method`` from a row, unless the row names it (``client``).

The namespace is the category in snake case (``Fine Tuning`` -> ``fine_tuning``); the method is the operation id
without the words naming the category (``list_files`` -> ``files.list``, ``get_conversation_history`` ->
``conversations.get_history``).
"""

from __future__ import annotations

import re

from mistral_gateway.registry.operation import Operation

__all__ = ["client_name", "namespace_of"]


def namespace_of(category: str) -> str:
    return re.sub(r"\W+", "_", category.strip().lower())


def _category_words(category: str) -> set[str]:
    words = set()
    for word in namespace_of(category).split("_"):
        words |= {word, word.rstrip("s"), word + "s"}
        if word.endswith("ies"):
            words.add(word[:-3] + "y")
    return words


def client_name(op: Operation) -> str:
    """``namespace.method``: the row's own ``client`` if it has one, else the rule's."""
    if op.client:
        return op.client
    noise = _category_words(op.category)
    words = [w for w in op.id.split("_") if w not in noise]
    return f"{namespace_of(op.category)}.{'_'.join(words) or op.id}"
