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
                height = page.get_height()
                out = []
                for k, obj in enumerate(page.get_objects(max_depth=1)):
                    if obj.type != raw.FPDF_PAGEOBJ_IMAGE:
                        continue
                    left, bottom, right, top = obj.get_bounds()
                    out.append(PdfImageRef(index, k, (round(left * scale), round((height - top) * scale),
                                                      round(right * scale), round((height - bottom) * scale))))
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
                return _spans(raw, textpage, page.get_height(), scale)
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
    return str(exc).split("(", 1)[0].strip() or type(exc).__name__


def _readable(ch: str) -> bool:
    code = ord(ch)
    return ch.isprintable() and ch != "\ufffd" and not 0xE000 <= code <= 0xF8FF


def _spans(raw: Any, textpage: Any, height: float, scale: float) -> tuple[list[Span], int]:
    count = textpage.count_chars()
    rect = raw.FS_RECTF()
    spans: list[Span] = []
    run: list[tuple[str, float, float, float, float, float]] = []  # char, left, top, right, bottom, size
    readable = 0

    def flush() -> None:
        text = "".join(c[0] for c in run).strip()
        boxes = [c for c in run if c[3] > c[1]]
        if text and boxes:
            sizes = sorted(c[5] for c in boxes)
            spans.append(Span(text, min(c[1] for c in boxes) * scale, (height - max(c[2] for c in boxes)) * scale,
                              max(c[3] for c in boxes) * scale, (height - min(c[4] for c in boxes)) * scale,
                              sizes[len(sizes) // 2] * scale))
        run.clear()

    for i in range(count):
        ch = chr(raw.FPDFText_GetUnicode(textpage, i))
        if ch in "\r\n\x02":
            flush()
            continue
        if not ch.isspace():
            readable += _readable(ch)
        raw.FPDFText_GetLooseCharBox(textpage, i, ctypes.byref(rect))
        size = raw.FPDFText_GetFontSize(textpage, i) or (rect.top - rect.bottom)
        char = (ch, rect.left, rect.top, rect.right, rect.bottom, size)
        last = next((c for c in reversed(run) if c[3] > c[1] and not c[0].isspace()), None)
        if last is not None and not ch.isspace() and (rect.left - last[3] > 1.2 * max(size, last[5])
                                                       or rect.right < last[1]  # went back: a new line
                                                       or abs(rect.bottom - last[4]) > 0.5 * max(size, last[5])):
            flush()
        run.append(char)
    flush()
    return spans, readable
