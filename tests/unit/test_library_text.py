"""Library documents' types and text, per format, with inputs made here and the fake OCR engine (no model):
detection by content, extraction of PDF/images (through the OCR engine), DOCX, HTML, Markdown and text, and the
refusals (corrupt, encrypted, bombs, too many pages, no text)."""

from __future__ import annotations

import pytest

from library_samples import blank_png, docx, html_page, paragraph, table, zip_of
from mistral_gateway.engines.base import InvalidInput, OcrOptions, OcrPage
from mistral_gateway.engines.fake import FakeOcrEngine
from mistral_gateway.services import library_docx
from mistral_gateway.services.library_text import (
    DOCX,
    DocumentType,
    ExtractedText,
    UnsupportedDocument,
    detect_type,
    extract_text,
)
from ocr_samples import jpeg, text_pdf

pytestmark = pytest.mark.anyio
PDF = DocumentType("application/pdf", "pdf")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def refused(head: bytes, name: str | None = None) -> str:
    with pytest.raises(UnsupportedDocument) as caught:
        detect_type(head, name)
    return str(caught.value)


async def extract(data: bytes, kind: DocumentType, engine: object | None = None, max_pages: int = 50) -> ExtractedText:
    async def loader() -> object:
        return engine or FakeOcrEngine()

    return await extract_text(data, kind, ocr=loader, max_pages=max_pages)  # type: ignore[arg-type]


# -- detection ------------------------------------------------------------------------------------------------------
def test_pdfs_and_images_are_recognised_by_their_bytes_whatever_their_name() -> None:
    assert detect_type(text_pdf().data[:65536], "report.txt") == PDF
    assert detect_type(b"\n\n%PDF-1.7\n...", None) == PDF  # the header may come late in the first kilobyte
    assert detect_type(blank_png(), "scan.pdf") == DocumentType("image/png", "png")
    assert detect_type(jpeg(8, 8), "photo.jpeg") == DocumentType("image/jpeg", "jpeg")
    assert detect_type(jpeg(8, 8), None) == DocumentType("image/jpeg", "jpg")
    assert detect_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ", "a") == DocumentType("image/webp", "webp")
    assert detect_type(b"II*\x00\x08\x00", "page.tif") == DocumentType("image/tiff", "tif")
    assert detect_type(b"MM\x00*\x00\x08", None) == DocumentType("image/tiff", "tiff")


def test_docx_is_a_zip_holding_word_document_xml() -> None:
    data = docx(paragraph("Hello"))
    assert detect_type(data[:65536], "letter.bin") == DOCX
    assert DOCX.mime_type == "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    assert DOCX.extension == "docx"
    # word/document.xml beyond the head: the [Content_Types].xml at the start says what the package is
    assert detect_type(docx(paragraph("Hello"), padding=100_000)[:65536], None) == DOCX


def test_other_zips_and_office_formats_are_refused_with_what_they_are() -> None:
    assert "Excel workbook" in refused(docx("", kind="spreadsheetml.sheet"), "book.xlsx")
    assert "PowerPoint" in refused(zip_of({"ppt/presentation.xml": "<p/>"}), "deck.pptx")
    assert "a ZIP archive, not a DOCX" in refused(zip_of({"a.txt": "hello", "b.txt": "world"}), "docs.zip")
    assert "a ZIP archive, not a DOCX" in refused(zip_of({"a.txt": "hello"}), "fake.docx")
    assert "OpenDocument" in refused(zip_of({"mimetype": "application/vnd.oasis.opendocument.text"},
                                            stored=("mimetype",)), "a.odt")


def test_a_zip_whose_members_run_past_the_head_is_a_docx_only_by_its_name() -> None:
    head = zip_of({"big.bin": "y" * 100_000, "word/document.xml": "<w/>"}, stored=("big.bin",))[:65536]
    assert detect_type(head, "report.docx") == DOCX
    assert "ZIP archive" in refused(head, "archive.zip")


@pytest.mark.parametrize(("head", "what"), [
    (b"MZ\x90\x00\x03\x00\x00\x00", "Windows executable"), (b"\x7fELF\x02\x01\x01", "ELF executable"),
    (b"\x1f\x8b\x08\x00", "gzip"), (b"GIF89a\x01\x00", "GIF image"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00", "legacy or encrypted Office"),
    (bytes(range(256)) * 4, "nor UTF-8 text"), (b"text\x00with\x00nul", "binary data"),
    (b"\xff\xd9\x80\x81\x82 not utf-8 at all", "nor UTF-8 text"),
])
def test_binary_files_are_refused_saying_why(head: bytes, what: str) -> None:
    assert what in refused(head, "file.txt")


def test_text_html_and_markdown() -> None:
    assert detect_type(b"Just some notes.\n", "notes.txt") == DocumentType("text/plain", "txt")
    assert detect_type(b"Just some notes.\n", None) == DocumentType("text/plain", None)
    assert detect_type(b"# Title\n\nBody", "README.md") == DocumentType("text/markdown", "md")
    assert detect_type(b"# Title", "notes.markdown") == DocumentType("text/markdown", "markdown")
    assert detect_type(b"<!doctype html>\n<html><body>x</body></html>", "page.txt") == DocumentType("text/html",
                                                                                                  "html")
    assert detect_type(b"<!-- saved --><HTML lang=en>", None) == DocumentType("text/html", "html")
    assert detect_type(b"<p>fragment</p>", "part.htm") == DocumentType("text/html", "htm")
    assert detect_type(b"<p>fragment</p>", "part.txt") == DocumentType("text/plain", "txt")  # not a page


def test_utf16_with_a_byte_order_mark_and_cut_characters_are_text() -> None:
    assert detect_type("Grüße, 世界".encode("utf-16"), "a.txt") == DocumentType("text/plain", "txt")
    assert detect_type(b"\xef\xbb\xbfbom first", "a.md").mime_type == "text/markdown"
    head = ("é" * 40).encode("utf-8")[:-1]  # the head ended inside a two-byte character
    assert detect_type(head, "a.txt").mime_type == "text/plain"


# -- text and Markdown -----------------------------------------------------------------------------------------------
async def test_text_is_decoded_and_line_ends_normalised() -> None:
    assert (await extract("Grüße\r\nzweite Zeile".encode("utf-16"), DocumentType("text/plain", "txt"))).text == \
        "Grüße\nzweite Zeile"
    markdown = "# Title\n\n- item\n\n| a | b |\n"
    assert (await extract(b"\xef\xbb\xbf" + markdown.encode(), DocumentType("text/markdown", "md"))).text == markdown


async def test_text_without_words_or_not_decodable_is_refused() -> None:
    with pytest.raises(UnsupportedDocument, match="no text"):
        await extract(b" \n\t\n", DocumentType("text/plain", "txt"))
    with pytest.raises(UnsupportedDocument, match="not UTF-8"):
        await extract(b"ok \xff\xfe\xfa", DocumentType("text/plain", "txt"))


# -- PDF and images, through the OCR engine -------------------------------------------------------------------------
async def test_pdf_pages_are_joined_with_their_offsets() -> None:
    engine = FakeOcrEngine()
    out = await extract(b"First page <img> text.\fSecond page.\f\fFourth.", PDF, engine)
    assert out.text == "First page  text.\n\nSecond page.\n\n\n\nFourth."
    assert out.number_of_pages == 4
    assert out.page_starts == (0, 19, 33, 35)
    assert [out.text[s:].split("\n")[0] for s in out.page_starts] == ["First page  text.", "Second page.", "",
                                                                      "Fourth."]
    (_, options), = engine.calls
    assert (options.max_pages, options.image_limit) == (50, 0)  # images are not extracted: a library keeps text


async def test_more_pages_than_the_limit_are_refused_with_the_count() -> None:
    with pytest.raises(UnsupportedDocument, match="the document has 3 pages; a library reads at most 2 pages"):
        await extract(b"a\fb\fc", PDF, max_pages=2)


async def test_the_engines_refusal_is_the_documents_reason() -> None:
    class Refusing:
        async def read(self, document: bytes, options: OcrOptions) -> list[OcrPage]:
            raise InvalidInput("the document is not a readable PDF (it is encrypted: send it without a password)")

    with pytest.raises(UnsupportedDocument, match="encrypted: send it without a password"):
        await extract(b"%PDF-1.7 ...", PDF, Refusing())


async def test_an_image_without_text_is_refused() -> None:
    with pytest.raises(UnsupportedDocument, match="without readable text"):
        await extract(b"<img>", DocumentType("image/png", "png"))  # the fake reads an image with no text


# -- DOCX -----------------------------------------------------------------------------------------------------------
async def test_docx_paragraphs_headings_lists_and_tables_become_markdown() -> None:
    body = "".join([
        paragraph("Annual Report", "Title"),
        paragraph("Überblick", "berschrift1"),  # a localised style id: its name says heading 1
        paragraph("The fleet |grew by |twelve ships.", deleted="removed words"),
        paragraph("Details", "Heading2"),
        paragraph("Derived", "MyHeading"),  # based on heading 2
        paragraph("first point", item=0), paragraph("nested point", item=1),
        paragraph(""),
        table([["Port", "Ships"], ["Brest", "7"], ["Cádiz", "5"]]),
        paragraph("After the table."),
    ])
    out = await extract(docx(body), DOCX)
    assert out.text == ("# Annual Report\n\n# Überblick\n\nThe fleet grew by twelve ships.\n\n## Details\n\n"
                        "## Derived\n\n- first point\n\n  - nested point\n\n"
                        "| Port | Ships |\n| --- | --- |\n| Brest | 7 |\n| Cádiz | 5 |\n\nAfter the table.")
    assert out.page_starts is None and out.number_of_pages is None


async def test_docx_without_styles_part_still_reads() -> None:
    assert (await extract(docx(paragraph("Plain", "Heading1"), styles=False), DOCX)).text == "Plain"


@pytest.mark.parametrize(("data", "reason"), [
    (b"PK\x03\x04 truncated nonsense", "not a readable ZIP archive"),
    (zip_of({"a.txt": "x"}), "no word/document.xml"),
    (zip_of({"word/document.xml": "<w:document><unclosed>"}), "not well-formed XML"),
    (zip_of({"word/document.xml": '<!DOCTYPE d [<!ENTITY a "aaaa">]><d>&a;</d>'}), "declares a DTD"),
    (docx(""), "no text could be extracted"),
])
async def test_bad_docx_files_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(UnsupportedDocument, match=reason):
        await extract(data, DOCX)


async def test_a_docx_part_is_read_only_up_to_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(library_docx, "MAX_PART_BYTES", 10_000)
    bomb = docx(paragraph("z" * 50_000))  # deflates to well under the bound; inflates past it
    assert len(bomb) < 10_000
    with pytest.raises(UnsupportedDocument, match="too large"):
        await extract(bomb, DOCX)


# -- HTML -----------------------------------------------------------------------------------------------------------
async def test_html_keeps_structure_and_drops_furniture() -> None:
    page = html_page(
        "<nav><a href='/'>Home</a> | <a>Menu item</a></nav>"
        "<h1>Tide  tables</h1>\n<p>High water at\n  <b>06:12</b> &amp; 18:40.<br>Low at noon.</p>"
        "<div>Loose <span>text</span></div><ul><li>one</li><li>two<ol><li>inner</li><li>next</li></ol></li></ul>"
        "<table><tr><th>Port</th><th>Tide</th></tr><tr><td>Brest</td><td>6 m</td></tr></table>"
        "<pre>code  line 1\n  line 2</pre><p hidden>secret</p><footer>Footer note</footer>")
    out = await extract(page.encode(), DocumentType("text/html", "html"))
    assert out.text == ("# Tide tables\n\nHigh water at 06:12 & 18:40.\nLow at noon.\n\nLoose text\n\n- one\n\n- two"
                        "\n\n  1. inner\n\n  2. next\n\n| Port | Tide |\n| --- | --- |\n| Brest | 6 m |\n\n"
                        "code  line 1\n  line 2\n\nFooter note")
    for dropped in ("Home", "Menu", "script text", "color", "Page title", "secret"):
        assert dropped not in out.text


async def test_a_head_without_its_end_tag_ends_where_the_body_starts() -> None:
    page = b"<html><head><title>T</title><meta charset=utf-8><body><p>Body text.</p><nav>menu"
    assert (await extract(page, DocumentType("text/html", "html"))).text == "Body text."


async def test_html_is_decoded_with_its_declared_charset() -> None:
    page = html_page("<p>Café crème</p>", charset="windows-1252").encode("cp1252")
    assert (await extract(page, DocumentType("text/html", "html"))).text == "Café crème"


async def test_html_without_text_is_refused() -> None:
    with pytest.raises(UnsupportedDocument, match="no text"):
        await extract(html_page("<script>only()</script><img src=a.png>").encode(), DocumentType("text/html", "html"))
