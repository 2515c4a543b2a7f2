"""The OCR response body is written straight from the engine's pages (no model per page, image and dimension): it
must be byte for byte what the protocol models (``OCRResponse`` dumped with ``exclude_unset``) give, for every
combination of the options that add fields, and valid against ``OCRResponse``."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from mistral_gateway.engines.base import OcrImage, OcrPage, OcrTable
from mistral_gateway.protocol.ocr import (
    OCRImageObject,
    OCRPageDimensions,
    OCRPageObject,
    OCRRequest,
    OCRResponse,
    OCRTableObject,
    OCRUsageInfo,
)
from mistral_gateway.services.ocr import _body

PAGES = [
    OcrPage(0, '# Résumé "quoted" \\ back\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\u2028tab\tnul\x00 emoji \U0001f600',
            (OcrImage("img-0.jpeg", 1, 2, 30, 40, "data:image/jpeg;base64,AAAA"),
             OcrImage("img-1.jpeg", 0, 0, 5, 5, None)),
            1240, 1754, 150, (OcrTable("tbl-0.md", "| a |\n|---|", "markdown"),), "Header text", None),
    OcrPage(3, "", (), 0, 0, 72),
]


def _reference(pages: list[OcrPage], request: OCRRequest, model: str, size: int, annotation: str | None) -> bytes:
    """The response as the protocol models render it (what the service answered before it wrote JSON itself)."""
    objects = []
    for page in pages:
        images = [OCRImageObject(id=i.id, top_left_x=i.top_left_x, top_left_y=i.top_left_y,
                                 bottom_right_x=i.bottom_right_x, bottom_right_y=i.bottom_right_y,
                                 **({"image_base64": i.image_base64} if request.include_image_base64 else {}))
                  for i in page.images]
        extra: dict[str, Any] = {}
        if request.table_format is not None:
            extra["tables"] = [OCRTableObject(id=t.id, content=t.content, format=t.format) for t in page.tables]
        if request.extract_header:
            extra["header"] = page.header
        if request.extract_footer:
            extra["footer"] = page.footer
        objects.append(OCRPageObject(index=page.index, markdown=page.markdown, images=images,
                                     dimensions=OCRPageDimensions(dpi=page.dpi, height=page.height, width=page.width),
                                     **extra))
    response = OCRResponse(pages=objects, model=model,
                           usage_info=OCRUsageInfo(pages_processed=len(pages), doc_size_bytes=size),
                           **({"document_annotation": annotation} if annotation is not None else {}))
    return response.model_dump_json(exclude_unset=True).encode()


OPTIONS = list(itertools.product([None, False, True], [None, "markdown", "html"], [False, True], [False, True],
                                 [None, '{"title": "é"}']))


@pytest.mark.parametrize(("images", "tables", "header", "footer", "annotation"), OPTIONS)
def test_the_body_is_what_the_protocol_models_render(images: bool | None, tables: str | None, header: bool,
                                                     footer: bool, annotation: str | None) -> None:
    request = OCRRequest.model_validate({
        "model": "mistral-ocr-latest", "document": {"document_url": "data:application/pdf;base64,JVBERi0="},
        "include_image_base64": images, "table_format": tables, "extract_header": header, "extract_footer": footer})
    body = _body(PAGES, request, "mistral-ocr-latest", 4346, annotation)
    assert body == _reference(PAGES, request, "mistral-ocr-latest", 4346, annotation)
    parsed = OCRResponse.model_validate_json(body)
    assert [p.index for p in parsed.pages] == [0, 3]
    assert parsed.pages[0].markdown == PAGES[0].markdown
    assert (parsed.pages[0].images[0].image_base64 is not None) is bool(images)
    assert (parsed.pages[0].tables is not None) is (tables is not None)
    assert parsed.document_annotation == annotation


def test_no_pages() -> None:
    request = OCRRequest.model_validate({"model": None,
                                         "document": {"file_id": "1c3a9b0e-8f7e-4c57-9a52-000000000001"}})
    assert _body([], request, "mistral-ocr-latest", 0, None) == _reference([], request, "mistral-ocr-latest", 0, None)
