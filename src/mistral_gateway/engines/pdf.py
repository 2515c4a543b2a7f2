"""PDF access for OCR through pypdfium2: page sizes, the text layer as spans, embedded images, page renders.

PDFium is not thread-safe, not even across documents: every call into it in this process goes through
``PDFIUM_LOCK`` (the OCR engine renders pages one at a time and recognizes them in parallel outside the lock).
"""

from __future__ import annotations

import ctypes
import io
import threading
from dataclasses import dataclass
from typing import Any

from mistral_gateway.engines.base import InvalidInput
from mistral_gateway.engines.ocr_layout import Span

__all__ = ["PDFIUM_LOCK", "PdfFile", "PdfImageRef"]

PDFIUM_LOCK = threading.Lock()  # process-wide by necessity: PDFium's global state is shared by all documents
MIN_TEXT_CHARS = 20  # fewer readable characters over a page-sized image: a scan with a stray stamp, so OCR it
MAX_IMAGES_PER_PAGE = 500  # image objects looked at per page (a pattern of thousands of tiny tiles is not content)


@dataclass(frozen=True, slots=True)
class PdfImageRef:
    """An image object of a page: its index among the page's objects and its box in page pixels."""

    page: int
    index: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 from the top-left corner


class PdfFile:
    """One open PDF. Every method takes ``PDFIUM_LOCK``; ``close`` when done (after every page task finished)."""

    def __init__(self, data: bytes) -> None:
        import pypdfium2

        with PDFIUM_LOCK:
            try:
                self._doc = pypdfium2.PdfDocument(data)
                self.page_count = len(self._doc)
            except pypdfium2.PdfiumError as exc:
                raise InvalidInput(f"the document is not a readable PDF ({_reason(exc)})") from None

    def close(self) -> None:
        with PDFIUM_LOCK:
            self._doc.close()

    def size(self, index: int) -> tuple[float, float]:
        """Width and height in points."""
        with PDFIUM_LOCK:
            page = self._page(index)
            try:
                return page.get_width(), page.get_height()
            finally:
                page.close()

    def images(self, index: int, scale: float) -> list[PdfImageRef]:
        """The page's top-level image objects, in content order, boxes at ``scale`` pixels per point."""
        import pypdfium2.raw as raw

        with PDFIUM_LOCK:
            page = self._page(index)
            try:
                frame = _Frame(page, scale)
                out = []
                for k, obj in enumerate(page.get_objects(max_depth=1)):
                    if obj.type != raw.FPDF_PAGEOBJ_IMAGE:
                        continue
                    box = frame.box(*obj.get_bounds())
                    out.append(PdfImageRef(index, k, (round(box[0]), round(box[1]), round(box[2]), round(box[3]))))
                    if len(out) >= MAX_IMAGES_PER_PAGE:
                        break
                return out
            finally:
                page.close()

    def image_jpeg(self, ref: PdfImageRef, max_pixels: int) -> bytes:
        """The image object's pixels as a JPEG (its own resolution, or as shown on the page when that is larger
        than ``max_pixels``)."""
        with PDFIUM_LOCK:
            page = self._page(ref.page)
            try:
                obj = next(o for k, o in enumerate(page.get_objects(max_depth=1)) if k == ref.index)
                width, height = obj.get_px_size()
                try:
                    bitmap = obj.get_bitmap(render=width * height > max_pixels)
                except Exception:
                    bitmap = obj.get_bitmap(render=True)
                image = bitmap.to_pil().convert("RGB")  # a copy: the bitmap's buffer belongs to PDFium
            finally:
                page.close()
        out = io.BytesIO()
        image.save(out, "JPEG", quality=85)
        return out.getvalue()

    def text_spans(self, index: int, scale: float) -> tuple[list[Span], int]:
        """The page's text layer as spans (runs of characters on one line, split at gaps wider than about one em)
        and how many of its characters are readable (not replacement, private-use or control characters)."""
        import pypdfium2.raw as raw

        with PDFIUM_LOCK:
            page = self._page(index)
            textpage = page.get_textpage()
            try:
                return _spans(raw, textpage, _Frame(page, scale))
            finally:
                textpage.close()
                page.close()

    def render(self, index: int, scale: float) -> Any:
        """The page as an RGB PIL image at ``scale`` pixels per point."""
        with PDFIUM_LOCK:
            page = self._page(index)
            try:
                return page.render(scale=scale).to_pil().convert("RGB")
            finally:
                page.close()

    def _page(self, index: int) -> Any:
        import pypdfium2

        try:
            return self._doc[index]
        except pypdfium2.PdfiumError as exc:
            raise InvalidInput(f"page {index} of the PDF cannot be read ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    """PDFium's own reason ("Failed to load document (PDFium: Data format error)." -> "data format error")."""
    text = str(exc)
    reason = text.split("PDFium:", 1)[1].strip(" ).") if "PDFium:" in text else text.split("(", 1)[0].strip()
    if "password" in reason.lower():
        return "it is encrypted: send it without a password"
    return reason.lower() or type(exc).__name__


def _readable(ch: str) -> bool:
    code = ord(ch)
    return ch.isprintable() and ch != "\ufffd" and not 0xE000 <= code <= 0xF8FF


class _Frame:
    """PDF user space to page pixels as rendered: the crop box's origin, the page's rotation (clockwise, as
    displayed), the top-left corner as origin, ``scale`` pixels per point."""

    def __init__(self, page: Any, scale: float) -> None:
        self.left, self.bottom, right, top = page.get_cropbox()
        self.width, self.height = right - self.left, top - self.bottom
        self.rotation = page.get_rotation() % 360
        self.scale = scale

    def point(self, x: float, y: float) -> tuple[float, float]:
        x, y = x - self.left, y - self.bottom
        u, v = {90: (y, x), 180: (self.width - x, y), 270: (self.height - y, self.width - x)}.get(
            self.rotation, (x, self.height - y))
        return u * self.scale, v * self.scale

    def box(self, left: float, bottom: float, right: float, top: float) -> tuple[float, float, float, float]:
        (u0, v0), (u1, v1) = self.point(left, bottom), self.point(right, top)
        return min(u0, u1), min(v0, v1), max(u0, u1), max(v0, v1)


def _spans(raw: Any, textpage: Any, frame: _Frame) -> tuple[list[Span], int]:
    """Characters in reading order grouped into runs, in page pixels: a run ends at PDFium's line breaks, at a gap
    wider than 1.2 em, when the text goes back left, or when the baseline moves by half an em."""
    count = textpage.count_chars()
    rect = raw.FS_RECTF()
    spans: list[Span] = []
    run: list[tuple[str, float, float, float, float, float]] = []  # char, x0, y0, x1, y1 (pixels), size (pixels)
    readable = 0

    def flush() -> None:
        text = "".join(c[0] for c in run).strip()
        boxes = [c for c in run if c[3] > c[1]]
        if text and boxes:
            sizes = sorted(c[5] for c in boxes)
            spans.append(Span(text, min(c[1] for c in boxes), min(c[2] for c in boxes), max(c[3] for c in boxes),
                              max(c[4] for c in boxes), sizes[len(sizes) // 2]))
        run.clear()

    for i in range(count):
        ch = chr(raw.FPDFText_GetUnicode(textpage, i))
        if ch in "\r\n\x02":
            flush()
            continue
        if not ch.isspace():
            readable += _readable(ch)
        raw.FPDFText_GetLooseCharBox(textpage, i, ctypes.byref(rect))
        x0, y0, x1, y1 = frame.box(rect.left, rect.bottom, rect.right, rect.top)
        size = (raw.FPDFText_GetFontSize(textpage, i) * frame.scale) or (y1 - y0)
        last = next((c for c in reversed(run) if c[3] > c[1] and not c[0].isspace()), None)
        if last is not None and not ch.isspace() and (x0 - last[3] > 1.2 * max(size, last[5])
                                                       or x1 < last[1]  # went back: a new line
                                                       or abs(y1 - last[4]) > 0.5 * max(size, last[5])):
            flush()
        run.append((ch, x0, y0, x1, y1, size))
    flush()
    return spans, readable
