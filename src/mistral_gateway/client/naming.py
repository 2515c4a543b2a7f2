"""Client method names, derived from the registry: one namespace per category, one verb per operation.

The rule: the namespace is the category in snake case (``Fine Tuning`` -> ``fine_tuning``); the method is the
operation id without the words naming the category (``list_files`` -> ``files.list``, ``get_conversation_history``
-> ``conversations.get_history``). ``OVERRIDES`` names the operations the rule would name badly. An operation that
can stream (``stream: optional``) gets a second method: ``stream`` next to ``complete``, else ``<name>_stream``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mistral_gateway.registry import Operation

__all__ = ["OVERRIDES", "MethodSpec", "method_specs", "namespace_of"]

OVERRIDES: dict[str, tuple[str, str]] = {
    "create_chat_completions": ("chat", "complete"),
    "create_fim_completions": ("fim", "complete"),  # a Chat-category operation with its own namespace
    "list_available_models": ("models", "list"),
    "update_fine_tuned_model": ("fine_tuning", "update_model"),
    "archive_fine_tuned_model": ("fine_tuning", "archive_model"),
    "unarchive_fine_tuned_model": ("fine_tuning", "unarchive_model"),
    "get_batch_jobs": ("batch", "list_jobs"),
    "create_agent_completion": ("agents", "complete"),
    "moderations": ("moderation", "moderate"),
    "chat_moderations": ("moderation", "moderate_chat"),
    "classifications": ("classification", "classify"),
    "chat_classifications": ("classification", "classify_chat"),
    "ocr": ("ocr", "process"),
    "create_transcription": ("audio", "transcribe"),
    "create_streaming_transcription": ("audio", "transcribe_stream"),
}


@dataclass(frozen=True, slots=True)
class MethodSpec:
    namespace: str
    name: str
    op_id: str
    stream: bool  # this method returns an iterator of server-sent events

    @property
    def qualname(self) -> str:
        return f"{self.namespace}.{self.name}"


def namespace_of(category: str) -> str:
    return re.sub(r"\W+", "_", category.strip().lower())


def _category_words(category: str) -> set[str]:
    words = set()
    for word in namespace_of(category).split("_"):
        words |= {word, word.rstrip("s"), word + "s"}
        if word.endswith("ies"):
            words.add(word[:-3] + "y")
    return words


def _derived(op: Operation) -> tuple[str, str]:
    namespace = namespace_of(op.category)
    noise = _category_words(op.category)
    words = [w for w in op.id.split("_") if w not in noise]
    return namespace, "_".join(words) or op.id


def method_specs(operations: tuple[Operation, ...] | list[Operation]) -> list[MethodSpec]:
    """Every client method, in registry order; raises if two operations would get the same name."""
    specs: list[MethodSpec] = []
    for op in operations:
        namespace, name = OVERRIDES.get(op.id) or _derived(op)
        if op.stream == "always":
            specs.append(MethodSpec(namespace, name, op.id, True))
            continue
        specs.append(MethodSpec(namespace, name, op.id, False))
        if op.stream == "optional":
            specs.append(MethodSpec(namespace, "stream" if name == "complete" else f"{name}_stream", op.id, True))
    seen: dict[str, str] = {}
    for spec in specs:
        if seen.setdefault(spec.qualname, spec.op_id) != spec.op_id:
            raise ValueError(f"client method {spec.qualname} would serve both {seen[spec.qualname]} and {spec.op_id}")
    return specs
