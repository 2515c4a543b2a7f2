"""Classifier fine-tuning lines: what the jobs API validates is what the trainer reads."""

from __future__ import annotations

import pytest

from mistral_gateway.engines.base import ClassifierTargetSpec
from mistral_gateway.training.classifier_data import (
    MAX_INFERRED_LABELS,
    MAX_INFERRED_TARGETS,
    MAX_TEXT_CHARS,
    ClassifierExample,
    infer_targets,
    parse_line,
)

TARGETS = (ClassifierTargetSpec("sentiment", ("pos", "neg")),
           ClassifierTargetSpec("topics", ("food", "travel", "work"), multi_label=True))


def test_text_and_conversation_lines() -> None:
    assert parse_line(b'{"text": "great soup", "labels": {"sentiment": "pos", "topics": ["food"]}}', TARGETS) == \
        ClassifierExample("great soup", {"sentiment": ("pos",), "topics": ("food",)})
    line = {"messages": [{"role": "user", "content": "flight late"},
                         {"role": "assistant", "content": [{"type": "text", "text": "sorry"}]}],
            "labels": {"topics": ["travel", "work", "travel"]}}
    example = parse_line(line, TARGETS)
    # the text /v1/chat/classifications gives the engine: role: text per message
    assert example.text == "user: flight late\nassistant: sorry"
    assert example.labels == {"topics": ("travel", "work")}  # duplicates dropped, order kept


@pytest.mark.parametrize(("line", "reason"), [
    (b"{nope", "not valid JSON"),
    (b"[1]", "JSON object"),
    (b'{"labels": {"sentiment": "pos"}}', "'text' or 'messages'"),
    (b'{"text": " ", "labels": {"sentiment": "pos"}}', "non-empty string"),
    (b'{"text": "a"}', "needs 'labels'"),
    (b'{"text": "a", "labels": {}}', "needs 'labels'"),
    (b'{"text": "a", "labels": {"colour": "red"}}', "not one of the job's classifier_targets"),
    (b'{"text": "a", "labels": {"sentiment": "meh"}}', "not one of 'sentiment''s labels"),
    (b'{"text": "a", "labels": {"sentiment": ["pos", "neg"]}}', "single_class"),
    (b'{"text": "a", "labels": {"topics": []}}', "non-empty list"),
    (b'{"text": "a", "labels": {"topics": [1]}}', "non-empty list"),
    (b'{"messages": [], "labels": {"sentiment": "pos"}}', "non-empty list"),
    (b'{"messages": [{"content": "x"}], "labels": {"sentiment": "pos"}}', "needs a 'role'"),
    (b'{"messages": [{"role": "user", "content": [{"type": "image_url"}]}], "labels": {"sentiment": "pos"}}',
     "only text chunks"),
])
def test_bad_lines_say_why(line: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_line(line, TARGETS)


def test_text_is_bounded() -> None:
    with pytest.raises(ValueError, match="limit"):
        parse_line({"text": "x" * (MAX_TEXT_CHARS + 1), "labels": {"sentiment": "pos"}}, TARGETS)


def test_targets_are_inferred_from_the_labels_of_the_lines() -> None:
    lines = [b'{"text": "a", "labels": {"sentiment": "pos"}}', b"not json", b'{"text": "b"}',
             b'{"text": "c", "labels": {"sentiment": "neg", "topics": ["x", "y"]}}',
             b'{"text": "d", "labels": {"topics": ["x"]}}']
    assert infer_targets(lines) == (ClassifierTargetSpec("sentiment", ("neg", "pos")),
                                    ClassifierTargetSpec("topics", ("x", "y"), multi_label=True))


def test_inferred_targets_are_bounded() -> None:
    with pytest.raises(ValueError, match="no line has 'labels'"):
        infer_targets([b'{"text": "a"}'])
    many_targets = [f'{{"text": "a", "labels": {{"t{i}": "x"}}}}'.encode() for i in range(MAX_INFERRED_TARGETS + 1)]
    with pytest.raises(ValueError, match="more than 16 targets"):
        infer_targets(many_targets)
    many_labels = [f'{{"text": "a", "labels": {{"t": "l{i}"}}}}'.encode() for i in range(MAX_INFERRED_LABELS + 1)]
    with pytest.raises(ValueError, match="more than 64 labels"):
        infer_targets(many_labels)
