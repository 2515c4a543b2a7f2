"""Test material for library documents, made in memory: DOCX files written with zipfile (the parts Word writes that
the extractor reads), an HTML page, a PNG without text, an encrypted PDF, pages of prose. Other PDFs and scans come
from ``ocr_samples``."""

from __future__ import annotations

import io
import random
import zipfile
from xml.sax.saxutils import escape

from ocr_samples import PdfWriter, Sample

__all__ = ["CONTENT_TYPES", "blank_png", "docx", "encrypted_pdf", "html_page", "paragraph", "prose_pdf", "table",
           "zip_of"]

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.'
    '{kind}.main+xml"/></Types>')
_STYLES = (f'<w:styles xmlns:w="{_W}">'
           '<w:style w:type="paragraph" w:styleId="Title"><w:name w:val="Title"/></w:style>'
           '<w:style w:type="paragraph" w:styleId="berschrift1"><w:name w:val="heading 1"/></w:style>'
           '<w:style w:type="paragraph" w:styleId="Heading2"><w:name w:val="heading 2"/></w:style>'
           '<w:style w:type="paragraph" w:styleId="MyHeading"><w:name w:val="Fancy"/>'
           '<w:basedOn w:val="Heading2"/></w:style>'
           '<w:style w:type="paragraph" w:styleId="Normal"><w:name w:val="Normal"/></w:style></w:styles>')


def paragraph(text: str, style: str | None = None, *, item: int | None = None, deleted: str = "") -> str:
    """A ``w:p`` (each ``|`` in ``text`` starts a new run): ``style`` its paragraph style id, ``item`` its list
    level (a numbered paragraph), ``deleted`` text of a tracked deletion (not part of the text)."""
    props = (f'<w:pStyle w:val="{style}"/>' if style else "") + (
        f'<w:numPr><w:ilvl w:val="{item}"/><w:numId w:val="1"/></w:numPr>' if item is not None else "")
    runs = "".join(f"<w:r><w:t xml:space=\"preserve\">{escape(part)}</w:t></w:r>" for part in text.split("|"))
    removed = f"<w:del><w:r><w:delText>{escape(deleted)}</w:delText></w:r></w:del>" if deleted else ""
    return f"<w:p><w:pPr>{props}</w:pPr>{runs}{removed}</w:p>"


def table(rows: list[list[str]]) -> str:
    cells = "".join("<w:tr>" + "".join(f"<w:tc>{paragraph(c)}</w:tc>" for c in row) + "</w:tr>" for row in rows)
    return f"<w:tbl>{cells}</w:tbl>"


def docx(body: str, *, styles: bool = True, kind: str = "wordprocessingml.document", padding: int = 0) -> bytes:
    """A DOCX whose body is ``body`` (``paragraph``/``table`` XML). ``padding`` bytes of a stored image come first,
    so that word/document.xml starts past an upload's head."""
    document = f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{_W}"><w:body>{body}</w:body></w:document>'
    parts = {"[Content_Types].xml": CONTENT_TYPES.format(kind=kind)}
    if padding:
        parts["word/media/image1.bin"] = "x" * padding
    parts["word/document.xml"] = document
    if styles:
        parts["word/styles.xml"] = _STYLES
    return zip_of(parts, stored=("word/media/image1.bin",))


def zip_of(parts: dict[str, str | bytes], stored: tuple[str, ...] = ()) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data, zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED)
    return out.getvalue()


def html_page(body: str, *, charset: str | None = None) -> str:
    meta = f'<meta charset="{charset}">' if charset else ""
    return (f"<!DOCTYPE html><html><head>{meta}<title>Page title</title><style>p {{ color: red }}</style>"
            f"<script>var hidden = 'script text';</script></head><body>{body}</body></html>")


def blank_png(size: int = 200) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (size, size), "white").save(out, "PNG")
    return out.getvalue()


def encrypted_pdf(pdf: bytes) -> bytes:
    """``pdf`` declared encrypted by the standard security handler with a user password nobody knows: readers
    ask for the password (the text stays as it was, which does not matter: it is never decrypted)."""
    tail = pdf.rfind(b"trailer")
    lock = (b"/Encrypt << /Filter /Standard /V 1 /R 2 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> /P -4 >> "
            b"/ID [<" + b"33" * 16 + b"> <" + b"33" * 16 + b">] ")
    return pdf[:tail] + pdf[tail:].replace(b"<<", b"<< " + lock, 1)


_VOCABULARY = ("harbour", "tide", "vessel", "anchor", "pilot", "cargo", "berth", "quay", "ferry", "beacon", "channel",
               "dredging", "tonnage", "crane", "container", "schedule", "weather", "storm", "inspection", "customs",
               "manifest", "freight", "terminal", "warehouse", "lock", "navigation", "buoy", "current", "depth",
               "draught", "captain", "crew", "engine", "repair", "dock", "fuel")


def prose_pdf(pages: int, seed: int = 0) -> Sample:
    """``pages`` full pages of prose (11 pt, about 3,000 characters a page in paragraphs of six lines): the text
    density of a real report, for the ingestion benchmark. Deterministic for a seed."""
    rng = random.Random(seed)
    pdf, words = PdfWriter(), []
    for _ in range(pages):
        pdf.page()
        top = 72.0
        for row in range(42):
            line: list[str] = []
            while len(" ".join(line)) < 70:
                line.append(rng.choice(_VOCABULARY))
            text = " ".join(line).capitalize() + "."
            pdf.text(72, top, text, 11)
            words.append(text)
            top += 14.8 + (7.0 if row % 6 == 5 else 0.0)  # a paragraph's gap
    return Sample(pdf.bytes(), " ".join(words))
