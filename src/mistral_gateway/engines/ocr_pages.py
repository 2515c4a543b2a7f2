"""The pages of one document, as tasks for the OCR engine's pool: a PDF's (text layer, or render and recognize; its
embedded images numbered across the document) or an image's (one page, or a TIFF's frames).
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pybase64

from mistral_gateway.engines.base import InvalidInput, OcrImage, OcrOptions, OcrPage, OcrTable
from mistral_gateway.engines.ocr_layout import Figure, Span, page_markdown
from mistral_gateway.engines.pdf import MIN_TEXT_CHARS, PdfFile, PdfImageRef

if TYPE_CHECKING:
    from mistral_gateway.engines.ocr import RapidOcrEngine

__all__ = ["ImageSource", "PdfSource", "selected"]

OCR_HEADING_RATIO = 1.35  # OCR line heights vary with ascenders and descenders: headings need a clear margin
SCAN_COVER = 0.8  # an image covering this share of a PDF page is the page's scan, not a picture in it
MAX_IMAGES = 1000  # images extracted from one document when the request sets no image_limit


class PdfSource:
    def __init__(self, data: bytes, engine: RapidOcrEngine) -> None:
        self.engine = engine
        self.pdf = PdfFile(data)
        self.page_count = self.pdf.page_count

    def close(self) -> None:
        self.pdf.close()

    def _scale(self, index: int) -> tuple[float, float, float]:
        """(pixels per point, width, height in points): the configured dpi, lowered for pages so large that they
        would exceed the pixel bound."""
        width, height = self.pdf.size(index)
        scale = self.engine.dpi / 72
        if width * height * scale * scale > self.engine.max_pixels:
            scale = math.sqrt(self.engine.max_pixels / (width * height))
            while math.ceil(width * scale) * math.ceil(height * scale) > self.engine.max_pixels:
                scale *= 0.995  # the bitmap's sides are whole pixels
        return scale, width, height

    def tasks(self, indexes: list[int], options: OcrOptions) -> list[Callable[[], OcrPage]]:
        """One task per page; images are listed first, in page order, so their ids and ``image_limit`` count
        across the document."""
        limit = MAX_IMAGES if options.image_limit is None else min(options.image_limit, MAX_IMAGES)
        minimum = options.image_min_size or 0
        numbered = 0
        tasks = []
        for index in indexes:
            scale, width, height = self._scale(index)
            page_px = width * height * scale * scale
            refs = []
            for ref in self.pdf.images(index, scale):
                x0, y0, x1, y1 = ref.box
                if numbered >= limit or min(x1 - x0, y1 - y0) < max(minimum, 1) or (x1 - x0) * (y1 - y0) >= (
                        SCAN_COVER * page_px):
                    continue
                refs.append((ref, f"img-{numbered}.jpeg"))
                numbered += 1
            tasks.append(_PdfPage(self, index, scale, refs, options))
        return tasks

    def _read_page(self, index: int, scale: float, refs: list[tuple[PdfImageRef, str]], options: OcrOptions,
                   *, text_only: bool = False) -> OcrPage | None:
        """The page; with ``text_only``, None when it needs OCR (it is a scan) instead of recognizing it."""
        spans, readable = self.pdf.text_spans(index, scale)
        heading_ratio = 1.15
        if readable < MIN_TEXT_CHARS and (readable == 0 or self._has_scan(index, scale)):
            if text_only:
                return None
            spans, heading_ratio = self.engine.recognize(self.pdf.render(index, scale)), OCR_HEADING_RATIO
        images = []
        for ref, image_id in refs:
            data = None
            if options.include_image_base64:
                jpeg = self.pdf.image_jpeg(ref, self.engine.max_pixels)
                data = "data:image/jpeg;base64," + pybase64.b64encode_as_string(jpeg)  # SIMD: 15-50x faster
            images.append(OcrImage(image_id, *ref.box, image_base64=data))
        width, height = self.pdf.size(index)
        figures = [Figure(image_id, *ref.box) for ref, image_id in refs]
        return _page(index, spans, figures, images, round(width * scale), round(height * scale),
                     round(scale * 72), options, heading_ratio)

    def _has_scan(self, index: int, scale: float) -> bool:
        width, height = self.pdf.size(index)
        area = width * height * scale * scale
        return any((r.box[2] - r.box[0]) * (r.box[3] - r.box[1]) >= area / 2 for r in self.pdf.images(index, scale))


class _PdfPage:
    """One PDF page's task. ``text_layer()`` runs in the request's own thread: a page with a text layer is all PDFium
    work, which one process-wide lock serialises anyway, so a pool would only add thread hand-offs; a scanned page
    (None there) is then run on the pool, where recognition runs in parallel."""

    def __init__(self, source: PdfSource, index: int, scale: float, refs: list[tuple[PdfImageRef, str]],
                 options: OcrOptions) -> None:
        self.source, self.index, self.scale, self.refs, self.options = source, index, scale, refs, options

    def text_layer(self) -> OcrPage | None:
        return self._read(text_only=True)

    def __call__(self) -> OcrPage:
        page = self._read(text_only=False)
        assert page is not None
        return page

    def _read(self, *, text_only: bool) -> OcrPage | None:
        import pypdfium2

        try:
            return self.source._read_page(self.index, self.scale, self.refs, self.options, text_only=text_only)
        except pypdfium2.PdfiumError:
            raise InvalidInput(f"page {self.index} of the PDF cannot be read") from None


class ImageSource:
    """One image, or the frames of a TIFF. Pillow's image objects are not thread-safe: frames are decoded under a
    lock, recognized outside it."""

    def __init__(self, data: bytes, kind: str, engine: RapidOcrEngine) -> None:
        from PIL import Image

        self.engine = engine
        self._lock = threading.Lock()
        try:
            self.image = Image.open(io.BytesIO(data))
            self.page_count = getattr(self.image, "n_frames", 1) if kind == "tiff" else 1
        except Exception:
            raise InvalidInput(f"the document is not a readable {kind.upper()} image") from None

    def close(self) -> None:
        self.image.close()

    def tasks(self, indexes: list[int], options: OcrOptions) -> list[Callable[[], OcrPage]]:
        return [lambda i=index: self._page(i, options) for index in indexes]

    def _frame(self, index: int) -> tuple[Any, int]:
        from PIL import ImageOps

        with self._lock:
            try:
                self.image.seek(index)
                width, height = self.image.size
                if width * height > self.engine.max_pixels:
                    raise InvalidInput(f"page {index} is {width}x{height} pixels; the limit is "
                                       f"{self.engine.max_pixels} pixels per page")
                # upright as a viewer shows it: phone photos store their rotation in EXIF
                frame = ImageOps.exif_transpose(self.image).convert("RGB")
                dpi = self.image.info.get("dpi", (72, 72))[0]
            except InvalidInput:
                raise
            except Exception:
                raise InvalidInput(f"page {index} of the image cannot be decoded") from None
        return frame, round(float(dpi)) or 72

    def _page(self, index: int, options: OcrOptions) -> OcrPage:
        frame, dpi = self._frame(index)
        spans = self.engine.recognize(frame)
        return _page(index, spans, [], [], frame.width, frame.height, dpi, options, OCR_HEADING_RATIO)


def selected(options: OcrOptions, count: int) -> list[int]:
    indexes = list(range(count)) if options.pages is None else list(options.pages)
    bad = [i for i in indexes if not 0 <= i < count]
    if bad:
        raise InvalidInput(f"page {bad[0]} does not exist: the document has {count} page{'s' * (count != 1)} "
                           f"(pages are numbered from 0)")
    if len(indexes) > options.max_pages:
        raise InvalidInput(f"{len(indexes)} pages selected; at most {options.max_pages} pages per request")
    return indexes


def _page(index: int, spans: list[Span], figures: list[Figure], images: list[OcrImage], width: int, height: int,
          dpi: int, options: OcrOptions, heading_ratio: float) -> OcrPage:
    text = page_markdown(spans, figures, height, table_format=options.table_format,
                         extract_header=options.extract_header, extract_footer=options.extract_footer,
                         heading_ratio=heading_ratio)
    tables = tuple(OcrTable(str(k), content, options.table_format or "markdown")
                   for k, content in enumerate(text.tables))
    return OcrPage(index, text.markdown, tuple(images), width, height, dpi, tables, text.header, text.footer)
