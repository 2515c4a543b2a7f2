"""HTML to Markdown-ish text with the standard library's ``html.parser``: headings as ``#`` lines, paragraphs, list
items, table rows, preformatted blocks kept; scripts, styles, navigation and other page furniture dropped."""

from __future__ import annotations

import codecs
import re
from html.parser import HTMLParser

__all__ = ["html_charset", "html_markdown"]

_DROPPED = {"script", "style", "nav", "noscript", "template", "svg", "head", "title", "iframe", "object", "button",
            "select", "textarea", "canvas", "math", "dialog"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_BLOCKS = {"p", "div", "section", "article", "main", "header", "footer", "aside", "blockquote", "figure",
           "figcaption", "address", "details", "summary", "form", "fieldset", "ul", "ol", "dl", "dt", "dd", "table",
           "thead", "tbody", "tfoot", "caption", "hr", "body", "html", "center"}
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.I)


def html_charset(data: bytes) -> str:
    """The page's encoding: its byte order mark, else its ``<meta charset>``, else UTF-8."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    found = _CHARSET.search(data[:4096])
    if found:
        try:
            return codecs.lookup(found.group(1).decode("ascii")).name
        except LookupError:
            pass
    return "utf-8"


def html_markdown(html: str) -> str:
    parser = _Converter()
    parser.feed(html)
    parser.close()
    return parser.result()


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.line: list[str] = []
        self.prefix = ""  # of the block being written: "## ", "- ", ...
        self.skipping: list[str] = []  # the dropped elements we are inside
        self.lists: list[list[int]] = []  # one per open list: [next number] for <ol>, [] for <ul>
        self.row: list[str] | None = None
        self.cell: list[str] | None = None
        self.table_rows = 0
        self.pre = 0

    # -- parser callbacks
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skipping:
            if tag != "body":
                if tag == self.skipping[-1] and tag not in _VOID:
                    self.skipping.append(tag)
                return
            self.skipping.clear()  # the head ends where the body starts, its end tag or not (HTML makes it optional)
        if tag in _DROPPED or any(k == "hidden" or (k == "aria-hidden" and v == "true") for k, v in attrs):
            if tag not in _VOID:
                self.skipping.append(tag)
            return
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._flush()
            self.prefix = "#" * int(tag[1]) + " "
        elif tag == "li":
            self._flush()
            depth = "  " * max(len(self.lists) - 1, 0)
            numbers = self.lists[-1] if self.lists else []
            if numbers:
                self.prefix = f"{depth}{numbers[0]}. "
                numbers[0] += 1
            else:
                self.prefix = f"{depth}- "
        elif tag in ("ul", "ol"):
            self._flush()
            self.lists.append([1] if tag == "ol" else [])
        elif tag == "tr":
            self._end_row()
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self._end_cell()
            self.cell = []
        elif tag == "br":
            self._text("\n")
        elif tag == "pre":
            self._flush()
            self.pre += 1
        elif tag == "table":
            self._flush()
            self.table_rows = 0
        elif tag in _BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag == self.skipping[-1]:
                self.skipping.pop()
            return
        if tag in ("ul", "ol") and self.lists:
            self._flush()
            self.lists.pop()
        elif tag in ("td", "th"):
            self._end_cell()
        elif tag == "tr":
            self._end_row()
        elif tag == "table":
            self._end_row()
            self._flush()
        elif tag == "pre":
            self._flush()
            self.pre = max(self.pre - 1, 0)
        elif tag in _BLOCKS or tag == "li" or (tag[:1] == "h" and tag[1:].isdigit()):
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self.skipping:  # the source's own line breaks are spaces; only <br> and <pre> break lines
            self._text(data if self.pre else re.sub(r"\s+", " ", data))

    # -- building the text
    def _text(self, data: str) -> None:
        (self.cell if self.cell is not None else self.line).append(data)

    def _end_cell(self) -> None:
        if self.cell is not None and self.row is not None:
            self.row.append(" ".join("".join(self.cell).split()).replace("|", "\\|"))
        self.cell = None

    def _end_row(self) -> None:
        self._end_cell()
        if self.row:
            self._flush()
            self.blocks.append("| " + " | ".join(self.row) + " |")
            if self.table_rows == 0:
                self.blocks.append("|" + " --- |" * len(self.row))
            self.table_rows += 1
        self.row = None

    def _flush(self) -> None:
        raw = "".join(self.line)
        self.line = []
        if self.pre:
            text = raw.strip("\n")
        else:
            text = "\n".join(" ".join(part.split()) for part in raw.split("\n"))
            text = re.sub(r"\n{2,}", "\n", text).strip()
        if text:
            self.blocks.append(self.prefix + (" ".join(text.split()) if self.prefix.startswith("#") else text))
        self.prefix = ""

    def result(self) -> str:
        self._end_row()
        self._flush()
        out: list[str] = []
        for previous, block in zip(["", *self.blocks], self.blocks, strict=False):
            if out:  # table rows one under another; every other block a paragraph
                out.append("\n" if block.startswith("|") and previous.startswith("|") else "\n\n")
            out.append(block)
        return "".join(out)
