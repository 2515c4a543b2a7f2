"""The local OCR engine (``OcrEngine``): PDFs and images to markdown pages.

A PDF page with a usable text layer is read from it (exact, and fast: no recognition); a page without one (a scan)
is rendered by PDFium and recognized by rapidocr (PP-OCR detection and recognition ONNX models shipped inside the
rapidocr wheel: nothing is downloaded). Images (PNG, JPEG, WebP, TIFF with one page per frame) are recognized.
``ocr_layout`` turns the spans into markdown.

Pages run in parallel on a thread pool (onnxruntime releases the GIL) of ``parallel`` workers at most, each with
``threads // workers`` intra-op threads, so pages x threads stays within the cores. A request keeps at most as many
pages queued as there are workers, so a long document shares the pool with the requests that come after it.
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import io
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from anyio.to_thread import run_sync

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import (
    EngineError,
    EngineUnavailable,
    InvalidInput,
    OcrImage,
    OcrOptions,
    OcrPage,
    OcrTable,
)
from mistral_gateway.engines.ocr_layout import TABLE_MARK, Figure, Span, page_markdown
from mistral_gateway.engines.pdf import MIN_TEXT_CHARS, PdfFile, PdfImageRef
from mistral_gateway.engines.sentence import workers_and_threads

__all__ = ["MODEL_FILES", "RapidOcrEngine", "load", "sniff"]

log = logging.getLogger("mistral_gateway.engines")

# The models rapidocr 3.10 ships in its wheel (its default configuration): passed by path, so rapidocr never
# consults its download table. Its text-direction classifier stays off (``use_cls``): document lines are upright,
# and it would cost a third model pass per line.
MODEL_FILES = {"Det": "PP-OCRv6_det_small.onnx", "Rec": "PP-OCRv6_rec_small.onnx"}
OCR_HEADING_RATIO = 1.35  # OCR line heights vary with ascenders and descenders: headings need a clear margin
SCAN_COVER = 0.8  # an image covering this share of a PDF page is the page's scan, not a picture in it
MAX_IMAGES = 1000  # images extracted from one document when the request sets no image_limit


def sniff(document: bytes) -> str:
    """The document's type from its first bytes: pdf, png, jpeg, webp or tiff."""
    head = document[:1024]
    if b"%PDF-" in head:
        return "pdf"
    for kind, magic in (("png", b"\x89PNG\r\n\x1a\n"), ("jpeg", b"\xff\xd8\xff"), ("tiff", b"II*\x00"),
                        ("tiff", b"MM\x00*")):
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    raise InvalidInput("the document is neither a PDF nor a PNG, JPEG, WebP or TIFF image")


class RapidOcrEngine:
    def __init__(self, *, workers: int, threads: int, dpi: int, max_pixels: int, detect_side: int = 1280,
                 models: Path | None = None) -> None:
        from rapidocr import RapidOCR

        self.dpi = dpi
        self.max_pixels = max_pixels
        self.workers = workers
        root = models or Path(__import__("rapidocr").__file__).parent / "models"
        params: dict[str, Any] = {"Global.log_level": "error", "Global.use_cls": False,
                                  "Det.limit_type": "max", "Det.limit_side_len": detect_side,
                                  "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                                  "EngineConfig.onnxruntime.inter_op_num_threads": 1}
        for stage, name in MODEL_FILES.items():
            if not (root / name).is_file():
                raise EngineError(f"rapidocr's bundled model {name} is missing from {root}: reinstall rapidocr")
            params[f"{stage}.model_path"] = str(root / name)
        started = time.perf_counter()
        self._ocr = RapidOCR(params=params)
        self._ocr._load_det_model()
        self._ocr._load_rec_model()
        self.load_seconds = time.perf_counter() - started
        self._pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocr")

    async def read(self, document: bytes, options: OcrOptions) -> list[OcrPage]:
        cancel = threading.Event()
        try:
            return await run_sync(self._read, document, options, cancel, abandon_on_cancel=True)
        finally:
            cancel.set()  # a cancelled request: the pages not started are dropped

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def recognize(self, image: Any) -> list[Span]:
        """Text lines of an RGB PIL image, as spans in its pixels."""
        try:
            result = self._ocr(image)
        except Exception as exc:
            raise EngineError(f"the OCR engine failed on a page: {type(exc).__name__}") from exc
        boxes = getattr(result, "boxes", None)
        if boxes is None or not len(boxes):
            return []
        return [Span(text, float(box[:, 0].min()), float(box[:, 1].min()), float(box[:, 0].max()),
                     float(box[:, 1].max()), float(box[:, 1].max() - box[:, 1].min()))
                for box, text in zip(boxes, result.txts, strict=True)]

    # -- the pipeline, on worker threads

    def _read(self, document: bytes, options: OcrOptions, cancel: threading.Event) -> list[OcrPage]:
        kind = sniff(document)
        source: _PdfSource | _ImageSource = (_PdfSource(document, self) if kind == "pdf"
                                             else _ImageSource(document, kind, self))
        try:
            indexes = _selected(options, source.page_count)
            tasks = source.tasks(indexes, options)
            return _numbered_tables(self._run(tasks, cancel), options)
        finally:
            source.close()

    def _run(self, tasks: list[Callable[[], OcrPage]], cancel: threading.Event) -> list[OcrPage]:
        """Runs the page tasks on the pool, at most ``workers`` of this request at a time; results in task order.
        Returns only when none of them runs any more (the source may then be closed)."""
        results: list[OcrPage | None] = [None] * len(tasks)
        running: dict[cf.Future[OcrPage], int] = {}
        queued = iter(enumerate(tasks))
        try:
            while True:
                while len(running) < self.workers and not cancel.is_set():
                    nxt = next(queued, None)
                    if nxt is None:
                        break
                    try:
                        running[self._pool.submit(nxt[1])] = nxt[0]
                    except RuntimeError:  # the pool was shut down: the server is stopping
                        raise EngineUnavailable("the OCR engine is shutting down") from None
                if not running:
                    break
                done, _ = cf.wait(running, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    results[running.pop(future)] = _result(future)
            if cancel.is_set():
                raise EngineError("the OCR request was cancelled")
            return [page for page in results if page is not None]
        finally:
            for future in running:
                future.cancel()
            cf.wait(running)


def _result(future: cf.Future[OcrPage]) -> OcrPage:
    """A page's result; its first error raised as an engine error (input errors as they are)."""
    try:
        return future.result()
    except EngineError:
        raise
    except Exception as exc:
        log.exception("OCR page failed")
        raise EngineError(f"the OCR engine failed on a page: {type(exc).__name__}") from exc


class _PdfSource:
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
            tasks.append(lambda i=index, s=scale, r=refs: self._page(i, s, r, options))
        return tasks

    def _page(self, index: int, scale: float, refs: list[tuple[PdfImageRef, str]], options: OcrOptions) -> OcrPage:
        import pypdfium2

        try:
            return self._read_page(index, scale, refs, options)
        except pypdfium2.PdfiumError:
            raise InvalidInput(f"page {index} of the PDF cannot be read") from None

    def _read_page(self, index: int, scale: float, refs: list[tuple[PdfImageRef, str]],
                   options: OcrOptions) -> OcrPage:
        spans, readable = self.pdf.text_spans(index, scale)
        heading_ratio = 1.15
        if readable < MIN_TEXT_CHARS and (readable == 0 or self._has_scan(index, scale)):
            spans, heading_ratio = self.engine.recognize(self.pdf.render(index, scale)), OCR_HEADING_RATIO
        images = []
        for ref, image_id in refs:
            data = None
            if options.include_image_base64:
                jpeg = self.pdf.image_jpeg(ref, self.engine.max_pixels)
                data = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
            images.append(OcrImage(image_id, *ref.box, image_base64=data))
        width, height = self.pdf.size(index)
        figures = [Figure(image_id, *ref.box) for ref, image_id in refs]
        return _page(index, spans, figures, images, round(width * scale), round(height * scale),
                     round(scale * 72), options, heading_ratio)

    def _has_scan(self, index: int, scale: float) -> bool:
        width, height = self.pdf.size(index)
        area = width * height * scale * scale
        return any((r.box[2] - r.box[0]) * (r.box[3] - r.box[1]) >= area / 2 for r in self.pdf.images(index, scale))


class _ImageSource:
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
        with self._lock:
            try:
                self.image.seek(index)
                width, height = self.image.size
                if width * height > self.engine.max_pixels:
                    raise InvalidInput(f"page {index} is {width}x{height} pixels; the limit is "
                                       f"{self.engine.max_pixels} pixels per page")
                frame = self.image.convert("RGB")
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


def _selected(options: OcrOptions, count: int) -> list[int]:
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


def _numbered_tables(pages: list[OcrPage], options: OcrOptions) -> list[OcrPage]:
    """Tables numbered across the document (pages ran in parallel, each counting from 0)."""
    if options.table_format is None:
        return pages
    ext = "md" if options.table_format == "markdown" else "html"
    out, number = [], 0
    for page in pages:
        markdown, tables = page.markdown, []
        for k, table in enumerate(page.tables):
            table_id = f"tbl-{number}.{ext}"
            markdown = markdown.replace(TABLE_MARK.format(k), f"[{table_id}]({table_id})")
            tables.append(replace(table, id=table_id))
            number += 1
        out.append(replace(page, markdown=markdown, tables=tuple(tables)))
    return out


def load(entry: ModelEntry, path: Path | None, settings: Settings) -> RapidOcrEngine:
    """The catalog's loader for engine ``rapidocr``: pages in parallel up to ``entry.parallel`` and the cores;
    ``path`` (optional) a directory holding the three model files instead of the wheel's."""
    workers, threads = workers_and_threads(entry)
    engine = RapidOcrEngine(workers=workers, threads=threads, dpi=settings.ocr_dpi,
                            max_pixels=settings.ocr_max_page_pixels, detect_side=settings.ocr_detect_max_side,
                            models=path)
    log.info("model %s: rapidocr loaded in %.2f s (%d page workers x %d threads)", entry.id, engine.load_seconds,
             workers, threads)
    return engine
