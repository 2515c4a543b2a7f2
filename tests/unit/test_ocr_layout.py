"""OCR page layout from synthetic boxes (no model): reading order, paragraphs, headings, columns, tables, figures,
header and footer bands; and the engine's input checks that need no model (document sniffing, page selection,
corrupt PDFs, table numbering)."""

from __future__ import annotations

import pytest

from mistral_gateway.engines.base import InvalidInput, OcrOptions, OcrPage, OcrTable
from mistral_gateway.engines.ocr import _numbered_tables, sniff
from mistral_gateway.engines.ocr_layout import TABLE_MARK, Figure, Span, page_markdown
from mistral_gateway.engines.ocr_pages import selected
from mistral_gateway.engines.pdf import PdfFile
from ocr_samples import jpeg, multi_page_pdf, text_pdf

H = 1650.0  # a letter page at 150 dpi


def line(text: str, x: float, y: float, size: float = 20.0, width: float | None = None) -> Span:
    """A span whose box is about as wide as its text (half an em per character)."""
    return Span(text, x, y, x + (width if width is not None else 0.5 * size * len(text)), y + size, size)


def lines(texts: list[str], x: float, y: float, size: float = 20.0, pitch: float = 27.0) -> list[Span]:
    return [line(t, x, y + k * pitch, size) for k, t in enumerate(texts)]


def test_paragraphs_headings_and_reading_order_come_from_boxes_not_input_order() -> None:
    spans = [
        *lines(["Body text of the second paragraph."], 150, 400),
        line("Big Title", 150, 100, size=48),
        line("Section", 150, 200, size=30),
        *lines(["The first paragraph starts here and", "goes on over a second line."], 150, 260),
    ]
    md = page_markdown(spans, [], H).markdown
    assert md == ("# Big Title\n\n## Section\n\nThe first paragraph starts here and goes on over a second line."
                  "\n\nBody text of the second paragraph.")


def test_a_word_hyphenated_at_a_line_end_is_joined() -> None:
    md = page_markdown(lines(["the recog-", "nizer reads it"], 100, 100), [], H).markdown
    assert md == "the recognizer reads it"


def test_two_columns_are_read_one_after_the_other() -> None:
    left = ["Rivers carry water from the", "mountains down to the sea and", "shape the valleys they cross."]
    right = ["Deserts receive little rain,", "yet many plants and animals", "have learned to live there."]
    spans = [line("Landscapes", 150, 100, size=40), *lines(left, 150, 250), *lines(right, 660, 250)]
    md = page_markdown(spans, [], H).markdown
    assert md == ("# Landscapes\n\n" + " ".join(left) + "\n\n" + " ".join(right))


def test_a_grid_of_short_cells_is_a_markdown_table() -> None:
    rows = [["Item", "Qty", "Price"], ["Apples", "12", "3.50"], ["Pears", "", "2.10"]]
    spans = [line(cell, x, 300 + 40 * r, width=80) for r, row in enumerate(rows)
             for x, cell in zip((150, 500, 800), row, strict=True) if cell]
    spans.append(line("Prices are in euros per kilogram.", 150, 480))
    md = page_markdown(spans, [], H).markdown
    assert md == ("| Item | Qty | Price |\n| --- | --- | --- |\n| Apples | 12 | 3.50 |\n| Pears |  | 2.10 |\n\n"
                  "Prices are in euros per kilogram.")


def test_separate_tables_leave_a_mark_and_their_content_in_the_asked_format() -> None:
    spans = [line(cell, x, 300 + 40 * r, width=60) for r, row in enumerate([["a|b", "c"], ["d", "e<f"]])
             for x, cell in zip((150, 500), row, strict=True)]
    html = page_markdown(spans, [], H, table_format="html")
    assert html.markdown == TABLE_MARK.format(0)
    assert html.tables == ("<table><thead><tr><th>a|b</th><th>c</th></tr></thead><tbody><tr><td>d</td>"
                           "<td>e&lt;f</td></tr></tbody></table>",)
    md = page_markdown(spans, [], H, table_format="markdown")
    assert md.tables == ("| a\\|b | c |\n| --- | --- |\n| d | e<f |",)


def test_one_row_with_a_wide_gap_is_a_line_not_a_table() -> None:
    md = page_markdown([line("Contents", 150, 300), line("page 3", 900, 300)], [], H).markdown
    assert md == "Contents page 3"


def test_figures_take_their_place_in_the_flow() -> None:
    spans = [line("Before the chart.", 150, 100), line("After the chart.", 150, 600)]
    figures = [Figure("img-0.jpeg", 150, 200, 600, 500)]
    md = page_markdown(spans, figures, H).markdown
    assert md == "Before the chart.\n\n![img-0.jpeg](img-0.jpeg)\n\nAfter the chart."


def test_header_and_footer_are_separate_only_when_asked() -> None:
    spans = [line("ACME annual report", 150, 30), line("Body text.", 150, 500), line("Page 7", 600, 1600)]
    plain = page_markdown(spans, [], H)
    assert plain.markdown == "ACME annual report\n\nBody text.\n\nPage 7"
    assert plain.header is None and plain.footer is None
    split = page_markdown(spans, [], H, extract_header=True, extract_footer=True)
    assert (split.markdown, split.header, split.footer) == ("Body text.", "ACME annual report", "Page 7")


def test_control_characters_and_blank_spans_are_dropped() -> None:
    md = page_markdown([line("a\x00b\x07c", 150, 100), line("   ", 150, 200)], [], H).markdown
    assert md == "abc"


def test_an_empty_page_is_empty_markdown() -> None:
    assert page_markdown([], [], H).markdown == ""


def test_documents_are_recognized_by_their_bytes() -> None:
    assert sniff(text_pdf().data) == "pdf"
    assert sniff(jpeg(8, 8)) == "jpeg"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    assert sniff(b"II*\x00rest") == "tiff"
    with pytest.raises(InvalidInput, match="neither a PDF nor a PNG, JPEG, WebP or TIFF"):
        sniff(b"GIF89a....")


def test_page_selection_is_checked_against_the_document() -> None:
    assert selected(OcrOptions(pages=(3, 1)), 5) == [3, 1]
    assert selected(OcrOptions(), 3) == [0, 1, 2]
    with pytest.raises(InvalidInput, match="page 5 does not exist: the document has 5 pages"):
        selected(OcrOptions(pages=(0, 5)), 5)
    with pytest.raises(InvalidInput, match="4 pages selected; at most 3"):
        selected(OcrOptions(max_pages=3), 4)


def test_a_corrupt_pdf_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match=r"not a readable PDF \(data format error\)"):
        PdfFile(b"%PDF-1.4\n garbage")
    pdf = PdfFile(multi_page_pdf().data)
    try:
        assert pdf.page_count == 5
    finally:
        pdf.close()


def test_tables_are_numbered_across_the_document() -> None:
    def page(index: int, count: int) -> OcrPage:
        marks = " ".join(TABLE_MARK.format(k) for k in range(count))
        tables = tuple(OcrTable(str(k), f"t{index}.{k}", "html") for k in range(count))
        return OcrPage(index, marks, (), 10, 10, 72, tables)

    pages = _numbered_tables([page(0, 2), page(1, 1)], OcrOptions(table_format="html"))
    assert [p.markdown for p in pages] == ["[tbl-0.html](tbl-0.html) [tbl-1.html](tbl-1.html)",
                                           "[tbl-2.html](tbl-2.html)"]
    assert [t.id for p in pages for t in p.tables] == ["tbl-0.html", "tbl-1.html", "tbl-2.html"]
    assert [t.content for p in pages for t in p.tables] == ["t0.0", "t0.1", "t1.0"]


def test_an_ocr_entry_serves_ocr_only() -> None:
    from mistral_gateway.config import ModelEntry
    from mistral_gateway.engines.manager import kind_of

    entry = ModelEntry(id="my-ocr", engine="rapidocr")
    assert entry.capabilities == ["ocr"] and kind_of(entry) == "ocr"
    with pytest.raises(ValueError, match="serves OCR only"):
        ModelEntry(id="my-ocr", engine="rapidocr", capabilities=["completion_chat"])


def test_body_text_near_the_top_is_not_a_header() -> None:
    spans = [*lines(["Running head"], 600, 90), *lines(["First body line near the top,", "and the second."], 150, 150)]
    split = page_markdown(spans, [], H, extract_header=True)
    assert (split.header, split.markdown) == ("Running head", "First body line near the top, and the second.")
    tight = lines(["Body starts at the margin", "and goes on."], 150, 120)  # normal leading: no header here
    split = page_markdown(tight, [], H, extract_header=True)
    assert (split.header, split.markdown) == (None, "Body starts at the margin and goes on.")


def test_a_long_two_column_region_is_read_whole() -> None:
    left = [f"left line {k} of the first column text" for k in range(400)]
    right = [f"right line {k} of the second column text" for k in range(400)]
    spans = [*lines(left, 150, 100, size=3, pitch=4), *lines(right, 660, 100, size=3, pitch=4)]
    md = page_markdown(spans, [], 2000).markdown
    assert md == " ".join(left) + "\n\n" + " ".join(right)


def test_a_rotated_page_s_text_layer_is_placed_as_displayed() -> None:
    """/Rotate 90 with the text drawn turned displays like the plain page: same spans, same pixel boxes."""
    def spans(rotate: int) -> list[Span]:
        pdf = PdfFile(text_pdf(rotate).data)
        try:
            return pdf.text_spans(0, 150 / 72)[0]
        finally:
            pdf.close()

    plain, rotated = spans(0), spans(90)
    assert [s.text for s in rotated] == [s.text for s in plain] and len(plain) == 7
    for a, b in zip(plain, rotated, strict=True):
        assert max(abs(a.x0 - b.x0), abs(a.y0 - b.y0), abs(a.x1 - b.x1), abs(a.y1 - b.y1), abs(a.size - b.size)) < 1


def test_bulleted_lines_are_list_items_even_when_the_bullet_stands_apart() -> None:
    items = ["first item of the list", "second item that wraps onto", "the next line", "third item"]
    spans = []
    for k, text in enumerate(items):
        y = 300 + 27 * k
        if k != 2:  # a wrapped line has no bullet of its own
            spans.append(line("\u2022", 150, y))
        spans.append(line(text, 200, y))  # 2.5 ems after the bullet: wider than a word gap
    md = page_markdown(spans, [], H).markdown
    assert md == "- first item of the list\n\n- second item that wraps onto the next line\n\n- third item"


def test_numbered_items_start_new_paragraphs() -> None:
    md = page_markdown(lines(["1. Mix the flour", "2. Add the water"], 150, 300), [], H).markdown
    assert md == "1. Mix the flour\n\n2. Add the water"


def test_pdfium_s_reasons_are_told_plainly() -> None:
    from mistral_gateway.engines.pdf import _reason

    assert _reason(Exception("Failed to load document (PDFium: Data format error).")) == "data format error"
    assert _reason(Exception("Failed to load document (PDFium: Incorrect password error).")) == (
        "it is encrypted: send it without a password")
