"""Tokenizing a long rendered chat in bounded pieces, stopping as soon as it cannot fit the context.

Why: llama.cpp's ``/tokenize`` is superlinear in the number of special tokens in one text (measured on SmolLM2,
loaded machine: 4,000 one-word messages 1.8 s, 8,000 7.7 s; 100,000 timed out after 79 s, issue 9), while plain text
tokenizes linearly. It partitions a text at special tokens first and tokenizes each fragment between them on its
own, so a prompt cut right before special tokens tokenizes, piece by piece, into exactly the tokens of the whole
(the BOS token added once, by the first piece). The real-model test checks that equality for each bundled model.
A prompt the context cannot hold is refused after tokenizing about a context's worth of it, not all of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from mistral_gateway.engines.base import ContextOverflow

__all__ = ["PIECE_CHARS", "markers_of", "tokenize_in_pieces"]

# Between a letter or digit and a letter: a boundary of the word-splitting regexes of GPT-2-style BPE tokenizers (no
# token spans it); any tokenizer counts each side on its own at most one token more (a leading-space marker).
_WORD_GAP = re.compile(r"(?<=[^\W_]) (?=[^\W\d_])")

PIECE_CHARS = 16_384  # prompts up to this size are tokenized whole; longer ones in pieces of about this size

Tokenize = Callable[[str, bool], list[int]]  # (text, add_special) -> token ids, special tokens parsed


def markers_of(pieces: Sequence[str], tokenize_plain: Callable[[str], list[int]]) -> list[str]:
    """The special tokens among a sample prompt's token texts: those whose text tokenizes as more than one token
    when special tokens are not parsed (``<|im_start|>`` is one token only as a special token)."""
    seen = {piece for piece in pieces if len(piece) > 1}
    return sorted((piece for piece in seen if len(tokenize_plain(piece)) > 1), key=len, reverse=True)


def tokenize_in_pieces(prompt: str, markers: Sequence[str], tokenize: Tokenize, *, limit: int,
                       model_id: str) -> list[int]:
    """The tokens of ``prompt``; ``ContextOverflow`` once more than ``limit`` are counted."""
    starts = [m.start() for m in re.finditer("|".join(map(re.escape, markers)), prompt)] if markers else []
    tokens: list[int] = []
    begin = 0
    for cut in [*starts, len(prompt)]:
        if cut - begin < PIECE_CHARS and cut != len(prompt):
            continue
        if cut > begin:
            piece = prompt[begin:cut]
            if len(piece) > 2 * PIECE_CHARS and (upto := _more_than(piece, tokenize, limit - len(tokens))):
                raise _overflow(limit, begin + upto, len(prompt), model_id, None)
            tokens += tokenize(piece, begin == 0)
            begin = cut
        if len(tokens) > limit:
            raise _overflow(limit, begin, len(prompt), model_id, len(tokens))
    return tokens


def _overflow(limit: int, upto: int, size: int, model_id: str, counted: int | None) -> ContextOverflow:
    return ContextOverflow(f"the prompt has more than {limit} tokens in its first {upto} characters of {size}; "
                           f"{model_id} has a context window of {limit} tokens", prompt_tokens=counted,
                           context_length=limit)


def _more_than(text: str, tokenize: Tokenize, budget: int) -> int | None:
    """How many leading characters of ``text`` (no special tokens inside) surely hold more than ``budget`` tokens,
    or None: it is tokenized in chunks of about ``PIECE_CHARS`` cut at word gaps, stopping once their count, less one
    per chunk, exceeds the budget. So one huge message is refused without tokenizing all of it."""
    count, begin = 0, 0
    while begin < len(text):
        gap = _WORD_GAP.search(text, begin + PIECE_CHARS)
        end = gap.start() if gap else len(text)
        count += len(tokenize(text[begin:end], False)) - 1
        begin = end
        if count > budget:
            return end
    return None
