"""Chunking a library document's text: the size bound, where chunks break (heading, paragraph, sentence, word),
the overlap, the heading path prefix, pages, and determinism."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from mistral_gateway.services.library_chunks import OVERLAP, split_chunks
from mistral_gateway.services.library_formats import ExtractedText, TextChunk

WORDS = ("harbour", "tide", "vessel", "anchor", "pilot", "cargo", "berth", "quay", "ferry", "beacon", "a", "the",
         "of", "northwestern", "approximately")


def prose(seed: int, paragraphs: int) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(paragraphs):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 25))).capitalize() + rng.choice(".!?")
                     for _ in range(rng.randint(1, 8))]
        out.append(" ".join(sentences))
    return "\n\n".join(out)


def chunks(text: str, size: int, page_starts: tuple[int, ...] | None = None) -> list[TextChunk]:
    return split_chunks(ExtractedText(text, page_starts, len(page_starts) if page_starts else None), size)


@pytest.mark.parametrize("size", [100, 180, 400, 1000, 3000])
def test_chunks_fit_cover_every_word_and_never_cut_one(size: int) -> None:
    text = prose(size, 60)
    words = set(re.findall(r"\S+", text))
    out = chunks(text, size)
    assert [c.index for c in out] == list(range(len(out)))
    assert all(len(c.text) <= size for c in out)
    seen = [w for c in out for w in re.findall(r"\S+", c.text)]
    assert set(seen) == words  # every word whole: none cut, none lost
    position, overlap = 0, int(2 * OVERLAP * size) + 1  # a whole sentence may take twice the overlap
    for chunk in out:  # the chunks are pieces of the text, in order, each overlapping the last a little at most
        found = text.find(chunk.text, max(position - overlap, 0))
        assert found >= position - overlap
        position = found + len(chunk.text)
    assert position == len(text)


def test_chunks_break_between_paragraphs_before_sentences() -> None:
    first = "The pilot boards at the outer beacon. " * 5 + "Ships wait for the tide."  # 214 characters
    second = "Cargo moves at the quay. " * 4
    out = chunks(first + "\n\n" + second.strip(), 300)
    assert [c.text for c in out] == [first, second.strip()]  # no overlap: each paragraph is whole


def test_a_long_paragraph_breaks_after_a_sentence_and_the_next_chunk_repeats_it() -> None:
    sentences = [f"Sentence number {i} talks about berth {i}." for i in range(12)]  # ~40 characters each
    out = chunks(" ".join(sentences), 200)
    assert all(c.text.endswith(".") for c in out)
    for before, after in itertools.pairwise(out):
        last = before.text.rsplit(". ", 1)[-1]
        assert after.text.startswith(last)  # the overlap: the last sentence opens the next chunk
        assert len(last) <= 2 * OVERLAP * 200  # modest
    assert len(out) >= 3


def test_without_sentences_chunks_break_between_words_and_overlap() -> None:
    text = " ".join(f"word{i}" for i in range(200))
    out = chunks(text, 150)
    for before, after in itertools.pairwise(out):
        tail = before.text[-int(OVERLAP * 150):]
        assert after.text.split()[0] in tail.split()
    assert all(re.fullmatch(r"(word\d+ ?)+", c.text) for c in out)


def test_a_word_longer_than_a_chunk_is_cut() -> None:
    text = "short " + "x" * 250 + " tail"
    out = chunks(text, 100)
    assert all(len(c.text) <= 100 for c in out)
    assert "".join(c.text for c in out).replace("short", "").replace("tail", "").replace(" ", "") == "x" * 250


def test_chunks_carry_the_page_they_start_on() -> None:
    pages = [prose(i, 3) for i in range(4)]
    text = "\n\n".join(pages)
    starts = tuple(sum(len(p) + 2 for p in pages[:i]) for i in range(4))
    out = chunks(text, 300, starts)
    for chunk in out:
        at = text.find(chunk.text)
        assert chunk.page == max(i for i, s in enumerate(starts) if s <= at)
    assert {c.page for c in out} == {0, 1, 2, 3}
    assert all(c.page is None for c in chunks(text, 300))


def test_markdown_chunks_start_with_their_heading_path_and_break_before_headings() -> None:
    text = ("# Harbour guide\n\nWelcome aboard.\n\n## Pilotage\n\n" + "Pilots board at the beacon. " * 12 +
            "\n\n### Fees\n\nThe fee is 40 euros.\n\n## Berths\n\n" + "Berth 4 is for ferries. " * 6 +
            "\n\n## Weather\n\nFog in May.")
    out = [c.text for c in chunks(text, 200)]
    assert out[0].startswith("# Harbour guide\n\nWelcome aboard.")  # the document's start needs no prefix
    assert any(c.startswith("Harbour guide > Pilotage\n\nPilots") for c in out)  # deep in a section
    assert any(c.startswith("Harbour guide > Pilotage\n\n") and "### Fees\n\nThe fee is 40 euros." in c for c in out)
    assert any(c.startswith("Harbour guide\n\n## Berths\n\nBerth 4") for c in out)
    assert out[-1].endswith("Fog in May.")
    assert not any(re.search(r"#+ [^\n]*$", c) for c in out)  # no chunk ends on a heading line


def test_a_heading_path_too_long_for_the_chunk_is_shortened_from_the_top() -> None:
    text = "# " + "A" * 30 + "\n\n## " + "B" * 10 + "\n\n" + "Body text here. " * 20
    out = chunks(text, 120)
    deep = [c.text for c in out if c.text.startswith("B" * 10 + "\n\nBody")]
    assert deep and all(len(c) <= 120 for c in deep)  # "A... > B..." is 43: more than a quarter of 120


def test_chunking_is_deterministic_and_empty_text_has_no_chunks() -> None:
    text = prose(7, 30)
    assert chunks(text, 500) == chunks(text, 500)
    assert chunks("", 500) == [] and chunks(" \n\n ", 500) == []


def test_hash_lines_in_fenced_code_are_not_headings() -> None:
    text = ("# Setup\n\n" + "Install it first. " * 6 + "\n\n```sh\n# list the models\ncurl /v1/models\n```\n\n" +
            "Then run the server and wait. " * 6)
    out = [c.text for c in chunks(text, 150)]
    assert all(c.startswith(("# Setup", "Setup\n\n")) for c in out), out  # never "list the models" as a path
