"""engines.pieces: a long prompt tokenized in pieces cut before special tokens, stopping once it cannot fit."""

from __future__ import annotations

import pytest

from mistral_gateway.engines.base import ContextOverflow
from mistral_gateway.engines.pieces import PIECE_CHARS, markers_of, tokenize_in_pieces


def fake_tokenize(calls: list[str]):  # type: ignore[no-untyped-def]
    """One token per character, the marker ``<s>`` one token, BOS (0) when asked."""
    def tokenize(text: str, add_special: bool) -> list[int]:
        calls.append(text)
        return [0] * add_special + [ord(c) for c in text.replace("<s>", "\x01")]

    return tokenize


def test_pieces_are_cut_before_markers_and_give_the_whole_prompts_tokens() -> None:
    prompt = "".join(f"<s>message {i} " + "x" * 500 for i in range(200))  # ~100k characters
    calls: list[str] = []
    tokens = tokenize_in_pieces(prompt, ["<s>"], fake_tokenize(calls), limit=10**9, model_id="m")
    assert tokens == fake_tokenize([])(prompt, True)
    assert len(calls) > 3 and all(piece.startswith("<s>") for piece in calls)
    assert all(len(piece) < 2 * PIECE_CHARS for piece in calls)


def test_a_prompt_that_cannot_fit_stops_after_about_a_context() -> None:
    prompt = "<s>word" * 100_000
    calls: list[str] = []
    with pytest.raises(ContextOverflow, match="more than 2048 tokens") as info:
        tokenize_in_pieces(prompt, ["<s>"], fake_tokenize(calls), limit=2048, model_id="m")
    assert info.value.context_length == 2048 and sum(map(len, calls)) < 2 * PIECE_CHARS < len(prompt)


def test_markers_are_the_texts_that_are_one_token_only_as_special_tokens() -> None:
    plain = {"<|im_start|>": [1, 2, 3], "user": [4], "\n": [5], "<|im_end|>": [6, 7]}
    assert markers_of(["<|im_start|>", "user", "\n", "<|im_end|>", "user"], lambda t: plain[t]) == [
        "<|im_start|>", "<|im_end|>"]


def test_one_huge_message_is_refused_without_tokenizing_all_of_it() -> None:
    prompt = "<s>user " + "many words " * 300_000 + "<s>assistant"  # 3.3 MB between two special tokens
    calls: list[str] = []
    with pytest.raises(ContextOverflow, match="more than 4096 tokens in its first"):
        tokenize_in_pieces(prompt, ["<s>"], fake_tokenize(calls), limit=4096, model_id="m")
    assert sum(map(len, calls)) < 3 * PIECE_CHARS
    assert all(not piece.startswith(" ") or piece[1].isalpha() for piece in calls)  # cut between words


def test_a_long_message_that_fits_keeps_its_exact_tokens() -> None:
    prompt = "<s>user " + "many words " * 10_000 + "<s>assistant"
    tokens = tokenize_in_pieces(prompt, ["<s>"], fake_tokenize([]), limit=10**6, model_id="m")
    assert tokens == fake_tokenize([])(prompt, True)
