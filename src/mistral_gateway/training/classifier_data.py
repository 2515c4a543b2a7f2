"""Classifier fine-tuning lines: ``{"text": ...}`` or ``{"messages": [...]}`` with ``"labels": {target: label or
[labels]}``, checked against the job's ``classifier_targets``.

The jobs API validates every line with ``parse_line`` (a ``ValueError`` says why, the caller adds the line number)
and the classifier trainer reads the same ``ClassifierExample``s, so what was validated is what is trained. A
conversation becomes the text the classifier engine reads at ``/v1/chat/classifications``: ``role: text`` per
message, joined by newlines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from mistral_gateway.engines.base import ClassifierTargetSpec

__all__ = ["MAX_INFERRED_LABELS", "MAX_INFERRED_TARGETS", "MAX_TEXT_CHARS", "ClassifierExample", "example_text",
           "infer_targets", "parse_line"]

MAX_TEXT_CHARS = 100_000  # one example's text; the encoder reads far less, this only bounds memory
# Targets read from the data when a job names none: the same bounds as classifier_targets in a request
MAX_INFERRED_TARGETS = 16
MAX_INFERRED_LABELS = 64


@dataclass(frozen=True, slots=True)
class ClassifierExample:
    text: str
    labels: dict[str, tuple[str, ...]]  # target name -> the line's labels of it (one for a single-label target)


def parse_line(raw: bytes | str | dict[str, Any], targets: Sequence[ClassifierTargetSpec]) -> ClassifierExample:
    """One line (JSON text or an already decoded object). A line labels at least one target; a target it leaves out
    is not trained on that line."""
    data = _decode(raw) if isinstance(raw, bytes | str) else raw
    if not isinstance(data, dict):
        raise ValueError("a line must be a JSON object")
    text = example_text(data)
    labels = data.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise ValueError("a line needs 'labels': an object of target name -> label (or list of labels)")
    by_name = {t.name: t for t in targets}
    checked: dict[str, tuple[str, ...]] = {}
    for name, value in labels.items():
        target = by_name.get(name)
        if target is None:
            raise ValueError(f"label target {_short(name)!r} is not one of the job's classifier_targets "
                             f"({', '.join(by_name)})")
        checked[name] = _labels(target, value)
    return ClassifierExample(text, checked)


def example_text(data: dict[str, Any]) -> str:
    if "text" in data:
        text = data["text"]
        if not isinstance(text, str) or not text.strip():
            raise ValueError("'text' must be a non-empty string")
    elif "messages" in data:
        text = _conversation(data["messages"])
    else:
        raise ValueError("a line needs 'text' or 'messages'")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"the text has {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    return text


def _conversation(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    turns = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError(f"message {i} needs a 'role'")
        turns.append(f"{message['role']}: {_content(message.get('content'), i)}")
    return "\n".join(turns)


def _content(content: Any, i: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise ValueError(f"message {i}: 'content' must be a string or a list of text chunks")
    parts = []
    for chunk in content:
        if not isinstance(chunk, dict) or chunk.get("type") not in ("text", "thinking"):
            raise ValueError(f"message {i}: classifiers read text; only text chunks are allowed")
        if chunk["type"] == "text":
            if not isinstance(chunk.get("text"), str):
                raise ValueError(f"message {i}: a text chunk needs 'text'")
            parts.append(chunk["text"])
    return "".join(parts)


def _labels(target: ClassifierTargetSpec, value: Any) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) for v in values):
        raise ValueError(f"labels of {target.name!r} must be a label or a non-empty list of labels")
    if len(values) > 1 and not target.multi_label:
        raise ValueError(f"target {target.name!r} is single_class: give one label, not {len(values)}")
    unknown = [v for v in values if v not in target.labels]
    if unknown:
        raise ValueError(f"label {_short(unknown[0])!r} is not one of {target.name!r}'s labels "
                         f"({', '.join(target.labels)})")
    return tuple(dict.fromkeys(values))


def _decode(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None


def _short(value: str) -> str:
    return value if len(value) <= 40 else value[:37] + "..."


def infer_targets(lines: Iterable[bytes]) -> tuple[ClassifierTargetSpec, ...]:
    """The targets a job's training lines use when the job names none (Mistral's examples send none): every key of
    ``labels`` is a target, its labels the values seen (sorted), multi-label when a line gives it more than one.
    Lines that are not JSON objects with a ``labels`` object are skipped here; the line check reports them."""
    seen: dict[str, set[str]] = {}
    multi: set[str] = set()
    for raw in lines:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        labels = data.get("labels") if isinstance(data, dict) else None
        if not isinstance(labels, dict):
            continue
        for name, value in labels.items():
            values = [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
            if not values:
                continue
            if name not in seen and len(seen) == MAX_INFERRED_TARGETS:
                raise ValueError(f"the training data labels more than {MAX_INFERRED_TARGETS} targets; name the "
                                 "job's classifier_targets")
            seen.setdefault(name, set()).update(values)
            if len(seen[name]) > MAX_INFERRED_LABELS:
                raise ValueError(f"target {_short(name)!r} has more than {MAX_INFERRED_LABELS} labels in the "
                                 "training data")
            if len(set(values)) > 1:
                multi.add(name)
    if not seen:
        raise ValueError("no line has 'labels': classifier lines look like {\"text\": ..., \"labels\": "
                         "{\"target\": \"label\"}}")
    return tuple(ClassifierTargetSpec(name, tuple(sorted(labels)), multi_label=name in multi)
                 for name, labels in seen.items())
