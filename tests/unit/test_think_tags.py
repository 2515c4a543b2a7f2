"""ThinkTagParser: a reasoning-trained model's <think>...</think> output split into thinking and answer, whatever
way the streamed pieces cut the tags."""

from __future__ import annotations

import pytest

from mistral_gateway.services.think_tags import ThinkTagParser


def split(pieces: list[str], *, opened: bool = False) -> tuple[str, str, list[bool]]:
    parser = ThinkTagParser(opened=opened)
    out = [pair for piece in pieces for pair in parser.feed(piece)] + parser.close()
    thinking = "".join(p for t, p in out if t)
    answer = "".join(p for t, p in out if not t)
    return thinking, answer, [t for t, _ in out]


def test_whole_output_in_one_piece() -> None:
    assert split(["<think>\nTwo plus two is four.\n</think>\n\nIt is 4."])[:2] == ("Two plus two is four.", "It is 4.")


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_tags_cut_anywhere(size: int) -> None:
    text = "  <think>\nfirst, the sum; then check it\n</think>\n\nThe answer is 4 <b>bold</b>."
    pieces = [text[i:i + size] for i in range(0, len(text), size)]
    thinking, answer, kinds = split(pieces)
    assert thinking == "first, the sum; then check it"
    assert answer == "The answer is 4 <b>bold</b>."
    assert kinds == sorted(kinds, reverse=True)  # every thinking piece comes before every answer piece


def test_output_without_a_tag_is_all_answer() -> None:
    assert split(["Hello", " <think>not at the start</think>"])[:2] == ("", "Hello <think>not at the start</think>")
    assert split(["<thinking>", " no"])[:2] == ("", "<thinking> no")  # a different tag is text


def test_prompt_that_opened_the_tag() -> None:
    assert split(["reasoning here", "</think>", "\n\nanswer"], opened=True)[:2] == ("reasoning here", "answer")


def test_unfinished_thinking_cut_by_max_tokens() -> None:
    assert split(["<think>still going </th"])[:2] == ("still going </th", "")


def test_a_close_tag_prefix_that_is_not_the_tag_is_released() -> None:
    thinking, answer, _ = split(["<think>a </t", "able> b</think>c"])
    assert (thinking, answer) == ("a </table> b", "c")


def test_only_whitespace_or_a_partial_tag_at_the_end() -> None:
    assert split(["   "])[:2] == ("", "")
    assert split(["<thi"])[:2] == ("", "<thi")
    assert split(["<think></think>", "ok"])[:2] == ("", "ok")
