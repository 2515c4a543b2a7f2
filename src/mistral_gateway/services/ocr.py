"""OCR: resolve the document (a base64 data URL, an http(s) URL through the shared safe fetcher, or an uploaded file
of the caller's workspace), read it with the model's OCR engine, and assemble Mistral's response.

A document annotation (``document_annotation_format``) is filled by the local chat model named by the
``ocr_annotation_model`` setting, through the chat service exactly as a chat request with ``response_format:
json_schema`` (grammar-constrained output), over the document's markdown; its answer is the JSON string
``document_annotation``. Everything cheap is checked before the document is fetched or read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from anyio.to_thread import run_sync

from mistral_gateway.config import Settings
from mistral_gateway.engines.base import EngineError, InvalidInput, OcrEngine, OcrOptions, OcrPage
from mistral_gateway.engines.manager import EngineManager, kind_of
from mistral_gateway.errors import BadGateway, BadRequest, GatewayError, PayloadTooLarge, ServiceUnavailable
from mistral_gateway.protocol.chat import ChatCompletionRequest, ResponseFormat, UsageInfo
from mistral_gateway.protocol.ocr import DEFAULT_OCR_MODEL, DocumentURLChunk, ImageURLChunk, OCRRequest
from mistral_gateway.security.fetch import FetchRefused, SafeFetcher, decode_data_url
from mistral_gateway.services.chat import ChatService
from mistral_gateway.services.completions import ENGINE_RETRY_AFTER, engine_errors, resolve_text_model
from mistral_gateway.services.files import FileService
from mistral_gateway.services.models import ModelCatalog

__all__ = ["ACCEPTED_TYPES", "CHARS_PER_TOKEN", "OcrLimits", "OcrResult", "OcrService"]

# What a document URL may serve (the fetcher also takes octet-stream); the engine recognises the bytes themselves.
ACCEPTED_TYPES = ("application/pdf", "image/")
CHARS_PER_TOKEN = 3  # conservative: the document's markdown is cut to what fits the annotation model's context
_INLINE_DECODE = 1 << 20  # base64 characters of a data URL decoded on the event loop
_PROMPT_RESERVE = 256  # tokens for the instructions around the document
_INSTRUCTIONS = ("Extract structured data from the document below. Answer with one JSON value that follows the "
                 "given JSON schema, using only information found in the document.")


@dataclass(frozen=True, slots=True)
class OcrLimits:
    max_document_bytes: int
    max_pages: int
    annotation_model: str
    annotation_max_tokens: int

    @classmethod
    def from_settings(cls, settings: Settings) -> OcrLimits:
        return cls(settings.ocr_max_document_bytes, settings.ocr_max_pages, settings.ocr_annotation_model,
                   settings.ocr_annotation_max_tokens)


@dataclass(frozen=True, slots=True)
class OcrResult:
    """The rendered response body; the pages read and the annotation's token usage (metered)."""

    body: bytes
    pages: int
    usage: UsageInfo | None


class OcrService:
    def __init__(self, catalog: ModelCatalog, engines: EngineManager, files: FileService, chat: ChatService,
                 limits: OcrLimits, fetcher: SafeFetcher) -> None:
        self._catalog = catalog
        self._engines = engines
        self._files = files
        self._chat = chat
        self.limits = limits
        self._fetcher = fetcher

    async def process(self, workspace_id: str, request: OCRRequest) -> OcrResult:
        model = request.model or DEFAULT_OCR_MODEL
        _refuse_unserved(request)
        engine = await self.engine(model)
        document = await self._document(workspace_id, request.document)
        pages = await _read(engine, document, _options(request, self.limits.max_pages))
        annotation, usage = None, None
        if request.document_annotation_format is not None:
            annotation, usage = await self._annotate(request.document_annotation_format,
                                                     request.document_annotation_prompt, pages)
        return OcrResult(_body(pages, request, model, len(document), annotation), len(pages), usage)

    async def engine(self, model: str) -> OcrEngine:
        entry = resolve_text_model(self._catalog, model, "ocr")  # 404 unknown; 400 naming the capability
        if kind_of(entry) != "ocr":  # e.g. a chat model configured with the ocr capability
            raise BadRequest(f"model {model!r} is not served by an OCR engine and cannot do 'ocr'",
                             code="UNSUPPORTED_MODEL_CAPABILITY", param="model")
        try:
            return await self._engines.ocr(entry)
        except EngineError as exc:
            raise ServiceUnavailable(f"model {model!r} could not be loaded: {exc}", retry_after=30.0,
                                     code="MODEL_LOAD_FAILED") from exc

    # -- the document ----------------------------------------------------------------------------------------
    async def _document(self, workspace_id: str, document: Any) -> bytes:
        if isinstance(document, DocumentURLChunk):
            return await self._url(document.document_url, "document_url")
        if isinstance(document, ImageURLChunk):
            return await self._url(document.url, "image_url")
        return await run_sync(self._file, workspace_id, str(document.file_id))

    async def _url(self, url: str, what: str) -> bytes:
        """A data URL (its size checked before decoding: a 413 naming the limit) or an http(s) URL read through the
        shared fetcher (private addresses refused unless allowed; bounded in bytes and time)."""
        limit = self.limits.max_document_bytes
        if url[:5].lower() == "data:":
            payload = len(url) - url.find(",") - 1 if "," in url else 0  # its length: no copy of megabytes
            _check_size(payload // 4 * 3 - url[-2:].count("="), f"the {what} data", limit)  # decoded size
            try:  # a large one (up to tens of MB of base64) is decoded off the event loop; a small one here, where
                # decoding costs less than the thread hop (1 MiB of base64: about 0.1 ms, or 3 ms when it is invalid
                # and binascii's strict mode judges it)
                if payload <= _INLINE_DECODE:
                    return decode_data_url(url, what=what, max_bytes=limit).data
                return (await run_sync(lambda: decode_data_url(url, what=what, max_bytes=limit))).data
            except FetchRefused as exc:
                raise BadRequest(str(exc), code="INVALID_DOCUMENT", param="document") from None
        try:
            return (await self._fetcher.fetch(url, what=what, max_bytes=limit, accept=ACCEPTED_TYPES)).data
        except FetchRefused as exc:  # says what was refused and why (a private address, the size limit, ...)
            raise BadRequest(str(exc), code="DOCUMENT_URL_REFUSED", param="document") from None

    def _file(self, workspace_id: str, file_id: str) -> bytes:
        info = self._files.retrieve(workspace_id, file_id)  # another workspace's file: 404, as a missing one
        if info.purpose != "ocr":
            raise BadRequest(f"file {file_id} has purpose {info.purpose!r}; upload documents for OCR with purpose "
                             "'ocr'", code="INVALID_FILE_PURPOSE", param="document")
        _check_size(info.bytes, "the file", self.limits.max_document_bytes)
        return b"".join(self._files.download(workspace_id, file_id).chunks)

    # -- the annotation -------------------------------------------------------------------------------------
    async def _annotate(self, fmt: ResponseFormat, prompt: str | None,
                        pages: list[OcrPage]) -> tuple[str, UsageInfo]:
        if fmt.type != "json_schema":
            raise BadRequest("document_annotation_format: only type 'json_schema' is valid for annotations",
                             code="INVALID_ANNOTATION_FORMAT", param="document_annotation_format")
        name, max_tokens = self.limits.annotation_model, self.limits.annotation_max_tokens
        try:
            entry = resolve_text_model(self._catalog, name, "completion_chat")
        except GatewayError as err:  # the configuration's fault, said as such
            raise BadRequest(f"document annotations are unavailable: the annotation model {name!r} (setting "
                             f"ocr_annotation_model) cannot serve: {err.message}", code="ANNOTATION_UNAVAILABLE",
                             param="document_annotation_format") from None
        budget = max(0, entry.max_context_length - max_tokens - _PROMPT_RESERVE) * CHARS_PER_TOKEN
        text = "\n\n".join(p.markdown for p in pages)[:budget]
        system = _INSTRUCTIONS + (f"\n\n{prompt}" if prompt else "")
        request = ChatCompletionRequest(model=name, response_format=fmt, temperature=0.0, max_tokens=max_tokens,
                                        messages=[{"role": "system", "content": system},  # type: ignore[list-item]
                                                  {"role": "user", "content": f"Document:\n\n{text}"}])
        out = await self._chat.complete(request)
        choice = out.choices[0]
        if choice.finish_reason != "stop":  # cut short: the JSON is incomplete
            raise BadGateway(f"the document annotation did not fit in {max_tokens} tokens (setting "
                             "ocr_annotation_max_tokens)", code="ANNOTATION_TRUNCATED",
                             headers={"Retry-After": str(ENGINE_RETRY_AFTER)})
        return choice.message.text, out.usage


def _refuse_unserved(request: OCRRequest) -> None:
    """Options the local engine cannot serve: a 400 saying why, before any work."""
    if request.bbox_annotation_format is not None:
        raise BadRequest("bbox_annotation_format is not supported here: annotating each extracted image needs a "
                         "vision model, and the local OCR annotations use a text-only chat model over the "
                         "document's markdown (document_annotation_format works)", code="UNSUPPORTED_OPTION",
                         param="bbox_annotation_format")
    if request.confidence_scores_granularity is not None:
        raise BadRequest("confidence_scores_granularity is not supported here: the local OCR engine reports no "
                         "confidence scores; leave it null", code="UNSUPPORTED_OPTION",
                         param="confidence_scores_granularity")


def _options(request: OCRRequest, max_pages: int) -> OcrOptions:
    return OcrOptions(pages=request.page_indexes, max_pages=max_pages, image_limit=request.image_limit,
                      image_min_size=request.image_min_size, include_image_base64=bool(request.include_image_base64),
                      table_format=request.table_format, extract_header=request.extract_header,
                      extract_footer=request.extract_footer)


async def _read(engine: OcrEngine, document: bytes, options: OcrOptions) -> list[OcrPage]:
    try:
        return await engine.read(document, options)
    except InvalidInput as exc:  # its message is safe to show: the caller's document or page selection
        raise BadRequest(str(exc), code="INVALID_DOCUMENT", param="document") from None
    except EngineError as exc:
        raise engine_errors(exc) from exc


def _body(pages: list[OcrPage], request: OCRRequest, model: str, size: int, annotation: str | None) -> bytes:
    """The ``OCRResponse`` JSON, written straight from the engine's pages: the same bytes as the protocol models
    dumped with ``exclude_unset`` (fields in their order; options' fields only when asked), without building and
    validating a model per page, image and dimension (tests/unit/test_ocr_body.py holds the two together)."""
    body: dict[str, Any] = {"pages": [_page(p, request) for p in pages], "model": model}
    if annotation is not None:
        body["document_annotation"] = annotation
    body["usage_info"] = {"pages_processed": len(pages), "doc_size_bytes": size}
    return orjson.dumps(body)


def _page(page: OcrPage, request: OCRRequest) -> dict[str, Any]:
    with_data = request.include_image_base64
    out: dict[str, Any] = {
        "index": page.index, "markdown": page.markdown,
        "images": [{"id": i.id, "top_left_x": i.top_left_x, "top_left_y": i.top_left_y,
                    "bottom_right_x": i.bottom_right_x, "bottom_right_y": i.bottom_right_y,
                    **({"image_base64": i.image_base64} if with_data else {})} for i in page.images],
        "dimensions": {"dpi": page.dpi, "height": page.height, "width": page.width}}
    if request.table_format is not None:
        out["tables"] = [{"id": t.id, "content": t.content, "format": t.format} for t in page.tables]
    if request.extract_header:
        out["header"] = page.header
    if request.extract_footer:
        out["footer"] = page.footer
    return out


def _check_size(size: int, what: str, limit: int) -> None:
    if size > limit:
        raise PayloadTooLarge(f"{what} is {size} bytes; OCR reads documents of at most {limit} bytes",
                              code="DOCUMENT_TOO_LARGE")
