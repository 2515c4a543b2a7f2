"""OCR models (Mistral spec: OCRRequest, FileChunk, DocumentURLChunk, ImageURLChunk, OCRResponse, OCRPageObject,
OCRImageObject, OCRPageDimensions, OCRTableObject, OCRUsageInfo).

The request refuses unknown fields (the spec's ``additionalProperties: false``; the SDK sends nothing else). The
document's ``type`` may be left out: the form is inferred from its key (``document_url``, ``image_url``,
``file_id``), as the docs' batch examples do. ``pages`` is a list of 0-based indexes or a string of indexes and
ranges (``"0,2-4"``); either way at most ``MAX_PAGES`` pages, each below ``MAX_PAGE_INDEX``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, StrictBool, Tag, field_validator, model_validator

from mistral_gateway.protocol.chat import ResponseFormat
from mistral_gateway.protocol.common import RequestModel, ResponseModel

__all__ = [
    "DEFAULT_OCR_MODEL",
    "MAX_PAGES",
    "MAX_PAGE_INDEX",
    "DocumentURLChunk",
    "FileChunk",
    "ImageURLChunk",
    "OCRImageObject",
    "OCRPageDimensions",
    "OCRPageObject",
    "OCRRequest",
    "OCRResponse",
    "OCRTableObject",
    "OCRUsageInfo",
    "ocr_limits",
    "parse_pages",
]

DEFAULT_OCR_MODEL = "mistral-ocr-latest"  # what ``model: null`` means
MAX_PAGES = 1000  # pages selected per request (Mistral's documented per-document limit)
MAX_PAGE_INDEX = 99_999
MAX_PAGES_CHARS = 8192  # the "0,2-4" form
MAX_URL_CHARS = 96 * 1024 * 1024  # a data URL of the largest document; the JSON body limit usually binds first
MAX_NAME_CHARS = 1024
MAX_PROMPT_CHARS = 20_000
MAX_IMAGES = 10_000  # image_limit
MAX_IMAGE_MIN_SIZE = 100_000  # pixels

_Strict = ConfigDict(extra="forbid", populate_by_name=True)


class FileChunk(RequestModel):
    model_config = _Strict
    type: Literal["file"] = "file"
    file_id: uuid.UUID = Field(description="An uploaded file of this workspace (purpose 'ocr').")


class DocumentURLChunk(RequestModel):
    model_config = _Strict
    type: Literal["document_url"] = "document_url"
    document_url: str = Field(min_length=1, max_length=MAX_URL_CHARS)
    document_name: str | None = Field(None, max_length=MAX_NAME_CHARS)


class ImageURL(RequestModel):
    model_config = _Strict
    url: str = Field(min_length=1, max_length=MAX_URL_CHARS)
    detail: Literal["low", "auto", "high"] | None = None


class ImageURLChunk(RequestModel):
    model_config = _Strict
    type: Literal["image_url"] = "image_url"
    image_url: ImageURL | Annotated[str, Field(min_length=1, max_length=MAX_URL_CHARS)]

    @property
    def url(self) -> str:
        return self.image_url if isinstance(self.image_url, str) else self.image_url.url


_KEYS = {"document_url": "document_url", "image_url": "image_url", "file_id": "file"}


def _document_kind(value: Any) -> str | None:
    """The ``type`` when given, else the form whose key is present (the spec's union has no discriminator)."""
    if not isinstance(value, dict):
        return getattr(value, "type", None)
    if "type" in value:
        return value["type"] if value["type"] in _KEYS.values() else None
    return next((kind for key, kind in _KEYS.items() if key in value), None)


Document = Annotated[
    Annotated[FileChunk, Tag("file")] | Annotated[DocumentURLChunk, Tag("document_url")]
    | Annotated[ImageURLChunk, Tag("image_url")],
    Discriminator(_document_kind, custom_error_type="invalid_document",
                  custom_error_message="document must be {type: document_url, document_url}, {type: image_url, "
                                       "image_url} or {type: file, file_id} (type may be left out)"),
]

PageIndex = Annotated[int, Field(ge=0, le=MAX_PAGE_INDEX)]


def parse_pages(value: str | list[int] | None) -> tuple[int, ...] | None:
    """The selected page indexes in the order given, duplicates dropped; ``"0,2-4"`` is ``(0, 2, 3, 4)``. Raises
    ValueError (a 422) for a malformed string, a range that runs backwards, or more than ``MAX_PAGES`` pages."""
    if value is None:
        return None
    if isinstance(value, list):
        indexes = value
    else:
        indexes = []
        for part in value.split(","):
            first, dash, last = part.strip().partition("-")
            if not first.isdigit() or (dash and not last.isdigit()):
                raise ValueError(f"pages: {part.strip()!r} is not a page index or a range like 2-4 (0-based)")
            start, end = int(first), int(last) if dash else int(first)
            if end < start:
                raise ValueError(f"pages: the range {part.strip()!r} runs backwards")
            if end > MAX_PAGE_INDEX:
                raise ValueError(f"pages: page indexes go up to {MAX_PAGE_INDEX}")
            if end - start >= MAX_PAGES:
                raise ValueError(f"pages: at most {MAX_PAGES} pages per request")
            indexes.extend(range(start, end + 1))
            if len(indexes) > MAX_PAGES:
                raise ValueError(f"pages: at most {MAX_PAGES} pages per request")
    unique = tuple(dict.fromkeys(indexes))
    if not unique:
        raise ValueError("pages: select at least one page (or leave pages out for all of them)")
    if len(unique) > MAX_PAGES:
        raise ValueError(f"pages: at most {MAX_PAGES} pages per request")
    return unique


class OCRRequest(RequestModel):
    model_config = _Strict

    model: str | None = Field(min_length=1, max_length=256, description=f"Required; null means {DEFAULT_OCR_MODEL}.")
    id: str | None = Field(None, max_length=256)
    document: Document
    pages: Annotated[str, Field(min_length=1, max_length=MAX_PAGES_CHARS)] | Annotated[
        list[PageIndex], Field(max_length=MAX_PAGES)] | None = None
    include_image_base64: StrictBool | None = None
    image_limit: int | None = Field(None, ge=0, le=MAX_IMAGES)
    image_min_size: int | None = Field(None, ge=0, le=MAX_IMAGE_MIN_SIZE)
    bbox_annotation_format: ResponseFormat | None = None
    document_annotation_format: ResponseFormat | None = None
    document_annotation_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    table_format: Literal["markdown", "html"] | None = None
    extract_header: StrictBool = False
    extract_footer: StrictBool = False
    include_blocks: StrictBool = False
    # SDK 3.7.0 also sends "block"; no granularity is served (the service's 400 says why)
    confidence_scores_granularity: Literal["word", "page", "block"] | None = None

    @field_validator("pages")
    @classmethod
    def _pages(cls, value: str | list[int] | None) -> str | list[int] | None:
        parse_pages(value)
        return value

    @model_validator(mode="after")
    def _prompt_needs_format(self) -> OCRRequest:
        if self.document_annotation_prompt is not None and self.document_annotation_format is None:
            raise ValueError("document_annotation_prompt needs document_annotation_format (a json_schema)")
        return self

    @property
    def page_indexes(self) -> tuple[int, ...] | None:
        return parse_pages(self.pages)


class OCRImageObject(ResponseModel):
    id: str
    top_left_x: int | None = Field(ge=0)
    top_left_y: int | None = Field(ge=0)
    bottom_right_x: int | None = Field(ge=0)
    bottom_right_y: int | None = Field(ge=0)
    image_base64: str | None = None  # only with include_image_base64
    image_annotation: str | None = None


class OCRPageDimensions(ResponseModel):
    dpi: int = Field(ge=0)
    height: int = Field(ge=0)
    width: int = Field(ge=0)


class OCRTableObject(ResponseModel):
    id: str
    content: str
    format: Literal["markdown", "html"]


class OCRPageObject(ResponseModel):
    index: int = Field(ge=0)
    markdown: str
    images: list[OCRImageObject]
    dimensions: OCRPageDimensions | None
    tables: list[OCRTableObject] | None = None  # only with table_format
    header: str | None = None  # only with extract_header
    footer: str | None = None  # only with extract_footer


class OCRUsageInfo(ResponseModel):
    pages_processed: int = Field(ge=0)
    doc_size_bytes: int | None = None


class OCRResponse(ResponseModel):
    pages: list[OCRPageObject]
    model: str
    document_annotation: str | None = None  # only with document_annotation_format: a JSON string
    usage_info: OCRUsageInfo


def ocr_limits() -> dict[tuple[str, str, str], dict[str, Any]]:
    """What the OCR service enforces beyond the request model, for the OpenAPI documents."""
    return {
        ("ocr_v1_ocr_post", "body", "document"): {"x-description": (
            "`type` may be left out: the form follows from the key present. `document_url`/`image_url`: an "
            "http(s) URL (public addresses only, unless the fetch allow-list permits) or a base64 `data:` URL; "
            "`file_id`: a file of this workspace uploaded with purpose `ocr` (404 otherwise). A PDF or an image "
            "(PNG, JPEG, WebP, TIFF) of at most `ocr_max_document_bytes` (configuration; over it: 413 "
            "DOCUMENT_TOO_LARGE for a data URL or a file, 400 DOCUMENT_URL_REFUSED for a fetched URL, both stating "
            "the limit; a refused fetch is a 400 DOCUMENT_URL_REFUSED saying why); an unreadable document is a 400 "
            "INVALID_DOCUMENT.")},
        ("ocr_v1_ocr_post", "body", "pages"): {"x-description": (
            f"At most {MAX_PAGES} pages, indexes 0 to {MAX_PAGE_INDEX}; a page the document lacks is a 400 "
            "INVALID_DOCUMENT.")},
        ("ocr_v1_ocr_post", "body", "bbox_annotation_format"): {"x-description": (
            "Refused (400 UNSUPPORTED_OPTION): annotating extracted images needs a vision model, which the local "
            "annotation path does not use.")},
        ("ocr_v1_ocr_post", "body", "document_annotation_format"): {"x-description": (
            "`json_schema` only (400 otherwise): the local chat model (`ocr_annotation_model`) fills the schema "
            "from the document's markdown with constrained output; the answer is `document_annotation`.")},
        ("ocr_v1_ocr_post", "body", "confidence_scores_granularity"): {"x-description": (
            "Any value but null is refused (400 UNSUPPORTED_OPTION): the local engine reports no confidence scores.")},
        ("ocr_v1_ocr_post", "body", "include_blocks"): {"x-description": (
            "Accepted (the SDK sends `true` by default) but no `blocks` are returned: the local engine does not "
            "segment pages into typed blocks.")},
    }
