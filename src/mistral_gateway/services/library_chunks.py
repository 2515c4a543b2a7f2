"""Splitting a document's text into chunks for retrieval.

A chunk holds at most ``chunk_size`` characters. It ends where the text breaks most strongly within its last half:
before a Markdown heading, else between paragraphs (or pages), else after a sentence, else at a line break, else
between words; a word is cut only when it alone is longer than a chunk. The next chunk starts up to ``OVERLAP`` of
a chunk earlier (at the strongest break in that window; up to twice that for a whole sentence), so a fact split
is whole in one of them (a cut between paragraphs has no overlap: a paragraph is whole in its chunk anyway).
Each chunk starts with the path of Markdown headings it is under (``Guide > Install``) when that fits in a quarter
of a chunk: a chunk deep in a section still says what the section is about.
Deterministic: the same text and size give the same chunks.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from mistral_gateway.services.library_formats import ExtractedText, TextChunk

__all__ = ["MIN_FILL", "OVERLAP", "split_chunks"]

OVERLAP = 0.12  # of chunk_size
MIN_FILL = 0.5  # a chunk is cut at its strongest break after this share of its room
MAX_PATH = 0.25  # of chunk_size: a longer heading path is shortened from its top, or left out
CUT, WORD, LINE, SENTENCE, PARAGRAPH, HEADING = range(6)  # how strongly the text breaks before a word

_GAP_AND_WORD = re.compile(r"(\s*)(\S+)")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(\S.*?)[ \t#]*$", re.M)
_SENTENCE_END = re.compile(r"[.!?\u2026:;][\"'\u201d\u2019\u00bb)\]*_]*$")  # closing quotes, brackets, emphasis
_SENTENCE_LAST = frozenset(".!?\u2026:;\"'\u201d\u2019\u00bb)]*_")  # what such a word can end with
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_FENCE = re.compile(r"^[ \t]{0,3}(```|~~~)", re.M)


@dataclass(slots=True)  # not frozen: made for every word, and a frozen one costs twice as much to make
class _Word:
    start: int
    end: int
    strength: int  # of the break before it


def split_chunks(extracted: ExtractedText, chunk_size: int) -> list[TextChunk]:
    text = extracted.text
    headings = _headings(text)
    words = _words(text, {h[0] for h in headings}, extracted.page_starts or (), chunk_size)
    paths = _HeadingPaths(headings, chunk_size)
    pages = extracted.page_starts
    chunks: list[TextChunk] = []
    i = 0
    while i < len(words):
        prefix = paths.prefix(words[i].start)
        room = chunk_size - len(prefix)
        if words[i].end - words[i].start > room:
            prefix, room = "", chunk_size
        cut = _cut(words, i, room)
        page = bisect.bisect_right(pages, words[i].start) - 1 if pages else None
        chunks.append(TextChunk(len(chunks), prefix + text[words[i].start:words[cut - 1].end],
                                max(page, 0) if page is not None else None))
        i = cut if cut == len(words) else _next_start(words, i, cut, OVERLAP * chunk_size)
    return chunks


def _headings(text: str) -> list[tuple[int, int, str]]:
    """The Markdown headings (offset, level, title), but for ``#`` lines inside fenced code blocks."""
    fences = [m.start() for m in _FENCE.finditer(text)]
    out = []
    for match in _HEADING.finditer(text):
        if bisect.bisect_left(fences, match.start()) % 2 == 0:  # an even number of fences before: outside code
            out.append((match.start(), len(match.group(1)), " ".join(match.group(2).split())[:200]))
    return out


def _words(text: str, headings: set[int], page_starts: tuple[int, ...], chunk_size: int) -> list[_Word]:
    pages = iter(sorted(page_starts))
    next_page = next(pages, None)
    words: list[_Word] = []
    ends_sentence = False  # the previous word's
    for match in _GAP_AND_WORD.finditer(text):
        gap, word = match.group(1, 2)
        start, end = match.start(2), match.end()
        if not words:
            strength = PARAGRAPH
        elif start in headings:
            strength = HEADING
        elif next_page is not None and next_page <= start:
            strength = PARAGRAPH
        elif "\n" in gap:  # the cheap test first: most gaps are one space
            strength = (PARAGRAPH if gap.count("\n") > 1 and _BLANK_LINE.search(gap)
                        else SENTENCE if ends_sentence else LINE)
        else:
            strength = SENTENCE if ends_sentence else WORD
        while next_page is not None and next_page <= start:
            next_page = next(pages, None)
        ends_sentence = word[-1] in _SENTENCE_LAST and _SENTENCE_END.search(word) is not None
        if end - start <= chunk_size:
            words.append(_Word(start, end, strength))
            continue
        for piece in range(start, end, chunk_size):  # a word longer than a chunk: cut into chunk-sized pieces
            words.append(_Word(piece, min(piece + chunk_size, end), strength if piece == start else CUT))
    return words


def _cut(words: list[_Word], first: int, room: int) -> int:
    """The index of the first word after the chunk starting at ``first``."""
    last = first
    while last + 1 < len(words) and words[last + 1].end - words[first].start <= room:
        last += 1
    if last + 1 == len(words):
        return len(words)
    best, best_strength = last + 1, words[last + 1].strength
    for cut in range(last, first, -1):  # earlier breaks, while the chunk stays at least half full
        if words[cut - 1].end - words[first].start < MIN_FILL * room:
            break
        if words[cut].strength > best_strength:
            best, best_strength = cut, words[cut].strength
    heading = best - 1
    while heading > first and words[heading].strength <= WORD:
        heading -= 1
    return heading if heading > first and words[heading].strength == HEADING else best  # not after a heading


def _next_start(words: list[_Word], first: int, cut: int, overlap: float) -> int:
    """Where the chunk after ``words[first:cut]`` starts: the cut itself when it falls between paragraphs; else
    within ``overlap`` characters before it, at the strongest break (the earliest of equals), or, when that is not
    a sentence's start, at the nearest sentence start within twice that."""
    if words[cut].strength >= PARAGRAPH:  # paragraphs are whole: nothing of them to repeat
        return cut
    end = words[cut - 1].end
    window: list[int] = []  # from the cut backwards
    for start in range(cut - 1, first, -1):
        if end - words[start].start > 2 * overlap:
            break
        window.append(start)
    near = [s for s in window if end - words[s].start <= overlap]
    best = max(near, key=lambda s: (words[s].strength, -s)) if near else cut
    if not near or words[best].strength < SENTENCE:
        best = next((s for s in window if s not in near and words[s].strength >= SENTENCE), best)
    return best


class _HeadingPaths:
    """The Markdown headings above each place of the text, as a chunk's prefix."""

    def __init__(self, headings: list[tuple[int, int, str]], chunk_size: int) -> None:
        self.offsets: list[int] = []
        self.paths: list[tuple[str, ...]] = []
        self.limit = int(MAX_PATH * chunk_size)
        stack: list[tuple[int, str]] = []
        for offset, level, title in headings:
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
            self.offsets.append(offset)
            self.paths.append(tuple(t for _, t in stack))

    def prefix(self, offset: int) -> str:
        at = bisect.bisect_right(self.offsets, offset) - 1
        if at < 0:
            return ""
        path = self.paths[at][:-1] if self.offsets[at] == offset else self.paths[at]
        while path and len(" > ".join(path)) + 2 > self.limit:
            path = path[1:]
        return " > ".join(path) + "\n\n" if path else ""
