"""Test material for OCR: documents with known text, made in memory.

``PdfWriter`` writes tiny PDFs by hand (the base-14 Helvetica fonts need no embedding; JPEG images go in as they are,
DCTDecode), so the text layer, font sizes and image positions of each sample are exactly known. Scans are those
pages rendered by pypdfium2 at 150 dpi: as a PNG, or wrapped in an image-only PDF by Pillow. The benchmark uses the
same samples (bench/ocr_direct.py puts this directory on its path).
"""

from __future__ import annotations

import difflib
import io
import re
from dataclasses import dataclass, field

__all__ = ["PAGE_H", "PAGE_W", "PdfWriter", "Sample", "image_pdf", "jpeg", "multi_page_pdf", "report_pdf", "scan_pdf",
           "scan_png", "similarity", "small_print_pdf", "stamped_scan_pdf", "table_pdf", "text_pdf", "tiff_pages",
           "two_column_pdf"]

PAGE_W, PAGE_H = 612, 792  # US letter, points


def _escape(text: str) -> bytes:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")


@dataclass
class _Page:
    ops: list[bytes] = field(default_factory=list)
    images: list[tuple[bytes, int, int]] = field(default_factory=list)  # jpeg, width px, height px


class PdfWriter:
    """A PDF with text (Helvetica, Helvetica-Bold) and JPEG images at given places; coordinates in points from the
    page's top-left corner (``top`` is the top of the text's em box)."""

    def __init__(self, rotate: int = 0) -> None:
        self.pages: list[_Page] = []
        # 90: every page is stored landscape with /Rotate 90 and its text drawn turned, so that it displays (and
        # renders) exactly like the unrotated page: what a scanner's or a landscape writer's PDF looks like
        self.rotate = rotate

    def page(self) -> PdfWriter:
        self.pages.append(_Page())
        return self

    def text(self, x: float, top: float, text: str, size: float = 11, bold: bool = False) -> PdfWriter:
        baseline = PAGE_H - top - size * 0.8
        font = "F2" if bold else "F1"
        matrix = b"0 1 -1 0 %.1f %.1f" % (top + size * 0.8, x) if self.rotate == 90 else b"1 0 0 1 %.1f %.1f" % (
            x, baseline)
        self.pages[-1].ops.append(b"BT /%s %.1f Tf %s Tm (%s) Tj ET" % (font.encode(), size, matrix, _escape(text)))
        return self

    def lines(self, x: float, top: float, lines: list[str], size: float = 11, leading: float = 1.35) -> float:
        """Writes ``lines`` one under another; returns the top of the next line."""
        for line in lines:
            self.text(x, top, line, size)
            top += size * leading
        return top

    def image(self, x: float, top: float, width: float, height: float, data: bytes, px: tuple[int, int]) -> PdfWriter:
        page = self.pages[-1]
        name = f"Im{len(page.images)}".encode()
        page.images.append((data, *px))
        page.ops.append(b"q %.1f 0 0 %.1f %.1f %.1f cm /%s Do Q" % (width, height, x, PAGE_H - top - height, name))
        return self

    def bytes(self) -> bytes:
        objects: list[bytes] = []  # object n is objects[n - 1]

        def add(body: bytes) -> int:
            objects.append(body)
            return len(objects)

        add(b"<< /Type /Catalog /Pages 2 0 R >>")
        add(b"")  # the page tree, once the pages' numbers are known
        fonts = [add(b"<< /Type /Font /Subtype /Type1 /BaseFont /%s /Encoding /WinAnsiEncoding >>" % name)
                 for name in (b"Helvetica", b"Helvetica-Bold")]
        kids = []
        for page in self.pages:
            content = b"\n".join(page.ops)
            content_ref = add(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
            xobjects = b" ".join(
                b"/Im%d %d 0 R" % (i, add(b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace "
                                          b"/DeviceRGB /BitsPerComponent 8 /Filter /DCTDecode /Length %d >>\n"
                                          b"stream\n%s\nendstream" % (w, h, len(data), data)))
                for i, (data, w, h) in enumerate(page.images))
            box = (PAGE_H, PAGE_W) if self.rotate == 90 else (PAGE_W, PAGE_H)
            kids.append(add(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Rotate %d /Contents %d 0 R "
                            b"/Resources << /Font << /F1 %d 0 R /F2 %d 0 R >> /XObject << %s >> >> >>"
                            % (*box, self.rotate, content_ref, fonts[0], fonts[1], xobjects)))
        objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
        out = io.BytesIO()
        out.write(b"%PDF-1.4\n")
        offsets = []
        for number, body in enumerate(objects, start=1):
            offsets.append(out.tell())
            out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
        xref = out.tell()
        out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
        out.writelines(b"%010d 00000 n \n" % offset for offset in offsets)
        out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
        return out.getvalue()


@dataclass(frozen=True)
class Sample:
    data: bytes
    text: str  # every word of the body in reading order (headings included), for character similarity
    title: str = ""
    heading: str = ""


def similarity(expected: str, got: str) -> float:
    """Character similarity of two texts, whitespace and markdown markup ignored (1.0: identical)."""
    def norm(text: str) -> str:
        return re.sub(r"\s+", " ", re.sub(r"[#|*_`]|-{3,}", " ", text)).strip().lower()
    return difflib.SequenceMatcher(None, norm(expected), norm(got), autojunk=False).ratio()


INTRO = ["The gateway reads documents page by page and writes each page",
         "as markdown. Pages with a text layer are read exactly, and",
         "scanned pages go through the optical character recognizer."]
SECOND = ["Every result lists the images found on the page with their",
          "bounding boxes, and the size of the page in pixels."]


def _text_page(pdf: PdfWriter) -> str:
    pdf.page().text(72, 72, "Quarterly Report", 24, bold=True)
    pdf.text(72, 130, "Introduction", 16, bold=True)
    top = pdf.lines(72, 165, INTRO)
    pdf.lines(72, top + 12, SECOND)
    return " ".join(["Quarterly Report", "Introduction", *INTRO, *SECOND])


def text_pdf(rotate: int = 0) -> Sample:
    """One page: a title (24 pt), a heading (16 pt) and two body paragraphs (11 pt)."""
    pdf = PdfWriter(rotate)
    text = _text_page(pdf)
    return Sample(pdf.bytes(), text, title="Quarterly Report",
                  heading="Introduction")


PAGE_WORDS = ["alpha", "bravo", "charlie", "delta", "echo"]


def multi_page_pdf() -> Sample:
    """Five pages, page i says "This is page i: <word>."."""
    pdf = PdfWriter()
    for i, word in enumerate(PAGE_WORDS):
        pdf.page().text(72, 72, f"This is page {i}: {word}.", 14)
    return Sample(pdf.bytes(), " ".join(f"This is page {i}: {w}." for i, w in enumerate(PAGE_WORDS)))


LEFT = ["Rivers carry water from the", "mountains down to the sea and", "shape the valleys they cross.",
        "Their banks feed forests and", "the towns that grow beside them."]
RIGHT = ["Deserts receive little rain,", "yet many plants and animals", "have learned to live there by",
         "storing water and resting in", "the shade during the day."]


def _two_column_page(pdf: PdfWriter) -> str:
    pdf.page().text(72, 72, "Landscapes of the World", 20, bold=True)
    pdf.lines(72, 120, LEFT)
    pdf.lines(320, 120, RIGHT)
    return " ".join(["Landscapes of the World", *LEFT, *RIGHT])


def two_column_pdf() -> Sample:
    """A full-width title, then two columns whose lines sit on the same baselines."""
    pdf = PdfWriter()
    text = _two_column_page(pdf)
    return Sample(pdf.bytes(), text, title="Landscapes of the World")


TABLE = [["Item", "Quantity", "Price"], ["Apples", "12", "3.50"], ["Pears", "7", "2.10"], ["Plums", "30", "4.75"]]


def _table_page(pdf: PdfWriter) -> str:
    pdf.page().text(72, 72, "Fruit order", 16, bold=True)
    top = 120.0
    for row in TABLE:
        for x, cell in zip((72, 250, 400), row, strict=True):
            pdf.text(x, top, cell, 11)
        top += 20
    pdf.text(72, top + 20, "Prices are in euros per kilogram.", 11)
    return " ".join(["Fruit order", *(" ".join(row) for row in TABLE), "Prices are in euros per kilogram."])


def table_pdf() -> Sample:
    pdf = PdfWriter()
    text = _table_page(pdf)
    return Sample(pdf.bytes(), text, heading="Fruit order")


def small_print_pdf(size: float = 5) -> Sample:
    """One page of fine print: the known lines three times over at ``size`` points."""
    lines = (INTRO + SECOND + LEFT + RIGHT) * 3
    pdf = PdfWriter().page()
    pdf.lines(40, 40, lines, size=size)
    return Sample(pdf.bytes(), " ".join(lines))


def report_pdf(pages: int = 4) -> Sample:
    """``pages`` pages cycling through the text, two-column and table pages (the benchmark's document)."""
    pdf = PdfWriter()
    makers = (_text_page, _two_column_page, _table_page)
    texts = [makers[i % len(makers)](pdf) for i in range(pages)]
    return Sample(pdf.bytes(), " ".join(texts))


def jpeg(width: int, height: int, rgb: tuple[int, int, int] = (40, 120, 200)) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), rgb)
    ImageDraw.Draw(image).ellipse((width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=(250, 200, 0))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


BEFORE, AFTER = "A chart of the results follows.", "The chart shows steady growth."


def image_pdf() -> Sample:
    """Text, a 200x100 pt picture (400x200 px JPEG) at (72, 130), text under it, and a 10x10 pt icon (20x20 px)."""
    pdf = PdfWriter().page()
    pdf.text(72, 90, BEFORE, 11)
    pdf.image(72, 130, 200, 100, jpeg(400, 200), (400, 200))
    pdf.text(72, 260, AFTER, 11)
    pdf.image(500, 700, 10, 10, jpeg(20, 20, (200, 20, 20)), (20, 20))
    return Sample(pdf.bytes(), f"{BEFORE} {AFTER}")


def stamped_scan_pdf(sample: Sample, stamp: str = "Received 12 May") -> bytes:
    """The sample's first page scanned (a JPEG filling the page) with a short text-layer stamp over it: a scan
    whose few characters of text must not pass for the page's text layer."""
    out = io.BytesIO()
    _render(sample.data)[0].save(out, "JPEG", quality=90)  # type: ignore[attr-defined]
    pdf = PdfWriter().page().image(0, 0, PAGE_W, PAGE_H, out.getvalue(), (1275, 1651))
    pdf.text(420, 740, stamp, 9)
    return pdf.bytes()


def _render(pdf: bytes, dpi: int = 150) -> list[object]:
    import pypdfium2

    doc = pypdfium2.PdfDocument(pdf)
    try:
        return [page.render(scale=dpi / 72).to_pil().convert("RGB") for page in doc]
    finally:
        doc.close()


def scan_png(sample: Sample, dpi: int = 150) -> bytes:
    """The sample's first page as a PNG scan (no text layer)."""
    out = io.BytesIO()
    _render(sample.data, dpi)[0].save(out, "PNG")  # type: ignore[attr-defined]
    return out.getvalue()


def scan_pdf(sample: Sample, dpi: int = 150) -> bytes:
    """The sample's pages rendered and wrapped in an image-only PDF (a scanned document)."""
    pages = _render(sample.data, dpi)
    out = io.BytesIO()
    pages[0].save(out, "PDF", resolution=dpi, save_all=True, append_images=pages[1:])  # type: ignore[attr-defined]
    return out.getvalue()


def tiff_pages(sample: Sample, dpi: int = 150) -> bytes:
    """The sample's pages as one multi-page TIFF."""
    pages = _render(sample.data, dpi)
    out = io.BytesIO()
    pages[0].save(out, "TIFF", save_all=True, append_images=pages[1:], compression="tiff_deflate")  # type: ignore[attr-defined]
    return out.getvalue()
