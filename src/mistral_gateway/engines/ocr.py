"""The local OCR engine (``OcrEngine``): PDFs and images to markdown pages.

A PDF page with a usable text layer is read from it (exact, and fast: no recognition); a page without one (a scan)
is rendered by PDFium and recognized by rapidocr (PP-OCR detection and recognition ONNX models shipped inside the
rapidocr wheel: nothing is downloaded). Images (PNG, JPEG, WebP, TIFF with one page per frame) are recognized.
``ocr_pages`` makes each page's task, ``ocr_layout`` turns its spans into markdown.

Pages run in parallel on a thread pool (onnxruntime releases the GIL) of ``parallel`` workers at most, each with
``threads // workers`` intra-op threads, so pages x threads stays within the cores. A request keeps at most as many
pages queued as there are workers, so a long document shares the pool with the requests that come after it.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from anyio.to_thread import run_sync

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.engines.base import EngineError, EngineUnavailable, InvalidInput, OcrOptions, OcrPage
from mistral_gateway.engines.ocr_layout import TABLE_MARK, Span
from mistral_gateway.engines.ocr_pages import ImageSource, PdfSource, selected
from mistral_gateway.engines.sentence import workers_and_threads

__all__ = ["MODEL_FILES", "RapidOcrEngine", "load", "sniff"]

log = logging.getLogger("mistral_gateway.engines")

# The models rapidocr 3.10 ships in its wheel (its default configuration): passed by path, so rapidocr never
# consults its download table. Its text-direction classifier stays off (``use_cls``): document lines are upright,
# and it would cost a third model pass per line.
MODEL_FILES = {"Det": "PP-OCRv6_det_small.onnx", "Rec": "PP-OCRv6_rec_small.onnx"}


def sniff(document: bytes) -> str:
    """The document's type from its first bytes: pdf, png, jpeg, webp or tiff."""
    head = document[:1024]
    for kind, magic in (("png", b"\x89PNG\r\n\x1a\n"), ("jpeg", b"\xff\xd8\xff"), ("tiff", b"II*\x00"),
                        ("tiff", b"MM\x00*")):
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if b"%PDF-" in head:  # PDF readers accept a header anywhere in the first kilobyte
        return "pdf"
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
        source: PdfSource | ImageSource = (PdfSource(document, self) if kind == "pdf"
                                           else ImageSource(document, kind, self))
        try:
            indexes = selected(options, source.page_count)
            tasks = source.tasks(indexes, options)
            return _numbered_tables(self._run(tasks, cancel), options)
        finally:
            source.close()

    def _run(self, tasks: list[Callable[[], OcrPage]], cancel: threading.Event) -> list[OcrPage]:
        """Runs the page tasks on the pool, at most ``workers`` of this request at a time; results in task order.
        Returns only when none of them runs any more (the source may then be closed)."""
        results: list[OcrPage | None] = [None] * len(tasks)
        running: dict[cf.Future[OcrPage], int] = {}
        pooled = []
        for i, task in enumerate(tasks):  # text-layer PDF pages here (ocr_pages._PdfPage); the rest on the pool
            inline = getattr(task, "text_layer", None)
            if cancel.is_set():
                raise EngineError("the OCR request was cancelled")
            page = _inline(inline) if inline is not None else None
            if page is None:
                pooled.append((i, task))
            results[i] = page
        queued = iter(pooled)
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


def _inline(read: Callable[[], OcrPage | None]) -> OcrPage | None:
    """A page read in this thread, its errors raised as a pooled page's would be."""
    try:
        return read()
    except EngineError:
        raise
    except Exception as exc:
        log.exception("OCR page failed")
        raise EngineError(f"the OCR engine failed on a page: {type(exc).__name__}") from exc


def _result(future: cf.Future[OcrPage]) -> OcrPage:
    """A page's result; its first error raised as an engine error (input errors as they are)."""
    try:
        return future.result()
    except EngineError:
        raise
    except Exception as exc:
        log.exception("OCR page failed")
        raise EngineError(f"the OCR engine failed on a page: {type(exc).__name__}") from exc


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
