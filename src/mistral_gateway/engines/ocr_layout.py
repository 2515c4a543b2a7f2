"""Page layout to markdown: text spans with boxes (a PDF's text layer, or OCR lines) and figure boxes in, the page's
markdown in reading order out.

Spans on one baseline form a row; a row's spans further apart than about one em are separate segments. Consecutive
rows whose segments keep a vertical gutter free form a region: a table when its segments are short (a few words
each), else columns of text read one after the other. Everything else flows top to bottom; lines become paragraphs
(split at vertical gaps and size changes), and a paragraph set larger than the body text is a heading. Figures take
their place in the flow by their top edge.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["TABLE_MARK", "Figure", "PageText", "Span", "page_markdown"]

TABLE_MARK = "\x00tbl{}\x00"  # where table k of the page stands, until the engine numbers tables across the document
BAND = 0.1  # header and footer bands: this share of the page's height at the top and at the bottom
HEADER_GAP = 1.0  # a header (footer) is set apart from the body by at least this many of its line heights
SEGMENT_GAP = 1.2  # spans of one row further apart than this many ems are separate segments (cells, columns)
PARAGRAPH_GAP = 0.6  # a vertical gap larger than this many line heights starts a new paragraph
SIZE_CHANGE = 0.2  # so does a size change of this share of the body size (OCR line heights vary by ~10%)
REGION_GAP = 2.5  # a gap of this many line heights ends a table or a column region
TABLE_MAX_WORDS = 4  # segments of a region with fewer words than this (median) are table cells, not lines of text
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BULLET = "\u2022\u25e6\u25aa\u2023\u25cf\u25cb\u25a0\u25a1\u00b7\u2013*-"  # bullets, middle dot, en dash, * and -
_MARKER = re.compile(rf"[{re.escape(_BULLET)}]|\(?\d{{1,3}}[.)]|[a-z][.)]")  # a list item's marker, alone
_ITEM = re.compile(rf"(?:[{re.escape(_BULLET)}]|\(?\d{{1,3}}[.)]|[a-z][.)])\s")  # a line that starts a list item
LIST_GAP = 4.0  # a marker this many ems at most before its text belongs to it (list indents are wider than gaps)


@dataclass(frozen=True, slots=True)
class Span:
    """A piece of text on one line; coordinates in page pixels from the top-left corner."""

    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    size: float  # font size (text layer) or line height (OCR): only compared within a page


@dataclass(frozen=True, slots=True)
class Figure:
    ref: str  # "img-0.jpeg"
    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True, slots=True)
class PageText:
    markdown: str
    tables: tuple[str, ...] = ()  # each table's content, in ``table_format`` (only when tables are separate)
    header: str | None = None
    footer: str | None = None


@dataclass(slots=True)
class _Line:
    """A line of a flow: merged segments, or a figure."""

    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    size: float
    figure: bool = False


@dataclass(slots=True)
class _Row:
    segments: list[_Line] = field(default_factory=list)

    @property
    def y0(self) -> float:
        return min(s.y0 for s in self.segments)

    @property
    def y1(self) -> float:
        return max(s.y1 for s in self.segments)


def page_markdown(spans: Sequence[Span], figures: Sequence[Figure], height: float, *,
                  table_format: Literal["markdown", "html"] | None = None, extract_header: bool = False,
                  extract_footer: bool = False, heading_ratio: float = 1.15) -> PageText:
    """The page's markdown. ``heading_ratio``: a paragraph this much larger than the body text is a heading (OCR
    line heights are noisier than font sizes, so the OCR path asks for more)."""
    spans = [Span(t, s.x0, s.y0, s.x1, s.y1, s.size) for s in spans if (t := _clean(s.text))]
    header = footer = None
    if extract_header:
        header, spans = _band(spans, height, top=True)
    if extract_footer:
        footer, spans = _band(spans, height, top=False)
    body = _body_size(spans)
    writer = _Writer(body, heading_ratio, table_format)
    blocks: list[tuple[float, str]] = []  # (top, markdown) of each top-level block
    flow: list[_Line] = []
    rows = _rows(spans)
    figures_left = sorted(figures, key=lambda f: f.y0)
    i = 0
    while i < len(rows):
        end = _region_end(rows, i)
        if end - i < 2:
            flow.extend(rows[i].segments if len(rows[i].segments) == 1 else [_join(rows[i].segments)])
            i += 1
            continue
        region = rows[i:end]
        inside = [f for f in figures_left if region[0].y0 <= (f.y0 + f.y1) / 2 <= region[-1].y1]
        figures_left = [f for f in figures_left if f not in inside]
        if _is_table(region):
            while len(region[-1].segments) < 2:  # a short line after a table is text again
                region.pop()
            blocks.append((region[0].y0, writer.table(region)))
            flow.extend(_figure_line(f) for f in inside)
            end = i + len(region)
        else:
            blocks.append((region[0].y0, writer.columns(region, inside)))
        i = end
    flow.extend(_figure_line(f) for f in figures_left)
    blocks.extend(writer.flow(flow))
    blocks.sort(key=lambda b: b[0])
    return PageText("\n\n".join(text for _, text in blocks if text), tuple(writer.tables), header, footer)


def _clean(text: str) -> str:
    return _CONTROL.sub("", text).strip()


def _band(spans: list[Span], height: float, *, top: bool) -> tuple[str | None, list[Span]]:
    """(the header's or footer's text, the other spans): the rows inside the band nearest the edge, up to the
    last one set apart from the body by a gap of at least a line (body text in the band stays body text)."""
    rows = _rows(spans)
    if not top:
        rows.reverse()
    taken = 0
    for k, row in enumerate(rows):
        if (row.y1 > height * BAND) if top else (row.y0 < height * (1 - BAND)):
            break
        after = rows[k + 1] if k + 1 < len(rows) else None
        gap = float("inf") if after is None else (after.y0 - row.y1) if top else (row.y0 - after.y1)
        if gap >= HEADER_GAP * (row.y1 - row.y0):
            taken = k + 1
    if not taken:
        return None, spans
    band = rows[:taken] if top else rows[:taken][::-1]
    cut = band[-1].y1 if top else band[0].y0
    inside = [s for s in spans if ((s.y0 + s.y1) / 2 <= cut) == top]
    return "\n".join(_join(r.segments).text for r in band), [s for s in spans if s not in inside]


def _body_size(spans: Sequence[Span]) -> float:
    """The size most characters of the page are set in."""
    weights: dict[float, int] = {}
    for s in spans:
        key = round(s.size, 1)
        weights[key] = weights.get(key, 0) + len(s.text)
    if not weights:
        return 1.0
    ordered = sorted(weights)
    half, seen = sum(weights.values()) / 2, 0
    for size in ordered:
        seen += weights[size]
        if seen >= half:
            return size
    return ordered[-1]


def _rows(spans: Sequence[Span]) -> list[_Row]:
    """Spans grouped into rows (vertical overlap of at least half the smaller height), each row's spans merged into
    segments (left to right, split at gaps wider than SEGMENT_GAP ems)."""
    rows: list[list[Span]] = []
    for span in sorted(spans, key=lambda s: (s.y0 + s.y1) / 2):
        if rows:
            last = rows[-1]
            top, bottom = min(s.y0 for s in last), max(s.y1 for s in last)
            overlap = min(bottom, span.y1) - max(top, span.y0)
            if overlap >= 0.5 * min(bottom - top, span.y1 - span.y0):
                last.append(span)
                continue
        rows.append([span])
    out = []
    for row in rows:
        segments: list[list[Span]] = []
        for span in sorted(row, key=lambda s: s.x0):
            if segments and _joins(segments[-1], span):
                segments[-1].append(span)
            else:
                segments.append([span])
        out.append(_Row([_merge(seg) for seg in segments]))
    return out


def _joins(segment: list[Span], span: Span) -> bool:
    """Whether ``span`` continues ``segment`` on its row: near enough, or the segment is a list marker alone."""
    gap, em = span.x0 - segment[-1].x1, max(span.size, segment[-1].size)
    return gap <= SEGMENT_GAP * em or (len(segment) == 1 and _MARKER.fullmatch(segment[0].text) is not None
                                       and gap <= LIST_GAP * em)


def _merge(spans: Sequence[Span]) -> _Line:
    text = spans[0].text
    for prev, span in itertools.pairwise(spans):
        gap = span.x0 - prev.x1
        text += (" " if gap > 0.15 * min(prev.size, span.size) else "") + span.text
    return _Line(text, min(s.x0 for s in spans), min(s.y0 for s in spans), max(s.x1 for s in spans),
                 max(s.y1 for s in spans), statistics.median(s.size for s in spans))


def _join(lines: Sequence[_Line]) -> _Line:
    """Segments of one row read as one line (a row that is not part of a region)."""
    return _Line(" ".join(s.text for s in lines), min(s.x0 for s in lines), min(s.y0 for s in lines),
                 max(s.x1 for s in lines), max(s.y1 for s in lines), max(s.size for s in lines))


def _intervals(segments: Sequence[_Line], cover: Sequence[tuple[float, float]] = ()) -> list[tuple[float, float]]:
    """The x-intervals the segments (and an earlier ``cover``) occupy, overlapping ones merged, left to right."""
    merged: list[tuple[float, float]] = []
    for x0, x1 in sorted([*cover, *((s.x0, s.x1) for s in segments)]):
        if merged and x0 <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], x1))
        else:
            merged.append((x0, x1))
    return merged


def _region_end(rows: list[_Row], start: int) -> int:
    """The end (exclusive) of the region starting at ``rows[start]``: rows that keep a vertical gutter free."""
    if len(rows[start].segments) < 2:
        return start + 1
    cover = _intervals(rows[start].segments)
    height = statistics.median(s.y1 - s.y0 for s in rows[start].segments)
    end = start + 1
    while end < len(rows):
        row = rows[end]
        grown = _intervals(row.segments, cover)  # the cover only: a long region stays linear
        if row.y0 - rows[end - 1].y1 > REGION_GAP * height or len(grown) < 2:
            break
        cover = grown
        end += 1
    return end


def _is_table(region: list[_Row]) -> bool:
    cells = [s for row in region if len(row.segments) >= 2 for s in row.segments]
    words = statistics.median(len(s.text.split()) for s in cells)
    return sum(len(row.segments) >= 2 for row in region) >= 2 and words < TABLE_MAX_WORDS


def _figure_line(f: Figure) -> _Line:
    return _Line(f"![{f.ref}]({f.ref})", f.x0, f.y0, f.x1, f.y1, 0.0, figure=True)


class _Writer:
    def __init__(self, body: float, heading_ratio: float, table_format: Literal["markdown", "html"] | None) -> None:
        self.body = body
        self.heading_ratio = heading_ratio
        self.table_format = table_format
        self.tables: list[str] = []

    def flow(self, lines: list[_Line]) -> list[tuple[float, str]]:
        """Paragraphs of lines read top to bottom: (top, markdown) each."""
        out: list[tuple[float, str]] = []
        para: list[_Line] = []
        for line in sorted(lines, key=lambda x: x.y0):
            if para and (line.figure or para[-1].figure or self._breaks(para[-1], line)):
                out.append(self._paragraph(para))
                para = []
            para.append(line)
        if para:
            out.append(self._paragraph(para))
        return out

    def _breaks(self, prev: _Line, line: _Line) -> bool:
        height = max(prev.y1 - prev.y0, line.y1 - line.y0)
        return (line.y0 - prev.y1 > PARAGRAPH_GAP * height or abs(line.size - prev.size) > SIZE_CHANGE * self.body
                or self._level(prev) != self._level(line) or _ITEM.match(line.text) is not None)

    def _level(self, line: _Line) -> int:
        ratio = line.size / self.body if self.body else 1.0
        return 0 if ratio < self.heading_ratio else 1 if ratio >= 1.6 else 2

    def _paragraph(self, lines: list[_Line]) -> tuple[float, str]:
        text = lines[0].text
        for line in lines[1:]:
            if text.endswith("-") and len(text) > 1 and text[-2].isalpha() and line.text[:1].islower():
                text = text[:-1] + line.text  # a word hyphenated at the line's end
            else:
                text += " " + line.text
        level = 0 if lines[0].figure else self._level(lines[0])
        if not level and text[:1] in _BULLET and _ITEM.match(text):
            text = "- " + text[2:].lstrip()  # a bulleted item as a markdown list item
        return lines[0].y0, ("#" * level + " " if level else "") + text

    def columns(self, region: list[_Row], figures: list[Figure]) -> str:
        segments = [s for row in region for s in row.segments]
        bounds = _intervals(segments)
        columns: list[list[_Line]] = [[] for _ in bounds]
        for line in [*segments, *map(_figure_line, figures)]:
            centre = (line.x0 + line.x1) / 2
            index = min(range(len(bounds)), key=lambda k: 0 if bounds[k][0] <= centre <= bounds[k][1]
                        else min(abs(centre - bounds[k][0]), abs(centre - bounds[k][1])))
            columns[index].append(line)
        return "\n\n".join(text for column in columns for _, text in self.flow(column))

    def table(self, region: list[_Row]) -> str:
        bounds = _intervals([s for row in region for s in row.segments])
        grid = []
        for row in region:
            cells = [""] * len(bounds)
            for s in row.segments:
                k = next(k for k, (a, b) in enumerate(bounds) if a <= (s.x0 + s.x1) / 2 <= b)
                cells[k] = f"{cells[k]} {s.text}".strip()
            grid.append(cells)
        if self.table_format is None:
            return _markdown_table(grid)
        self.tables.append(_markdown_table(grid) if self.table_format == "markdown" else _html_table(grid))
        return TABLE_MARK.format(len(self.tables) - 1)


def _markdown_table(grid: list[list[str]]) -> str:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    return "\n".join([row(grid[0]), row(["---"] * len(grid[0])), *map(row, grid[1:])])


def _html_table(grid: list[list[str]]) -> str:
    from html import escape

    head = "".join(f"<th>{escape(c)}</th>" for c in grid[0])
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in grid[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
