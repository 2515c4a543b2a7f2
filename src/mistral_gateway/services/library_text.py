"""A library document's text: its type recognised at upload, its text extracted when processed, then chunked.

Formats: plain text and Markdown; (to do) PDF (its text layer; scanned pages through the OCR engine), images through
the OCR engine, DOCX, HTML.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mistral_gateway.engines.base import OcrEngine

__all__ = ["DocumentType", "ExtractedText", "TextChunk", "UnsupportedDocument", "detect_type", "extract_text",
           "split_chunks"]

OcrLoader = Callable[[], Awaitable[OcrEngine]]


class UnsupportedDocument(ValueError):
    """The document cannot be read; the message says why and is safe to show to the uploader."""


@dataclass(frozen=True, slots=True)
class DocumentType:
    mime_type: str
    extension: str | None  # without the dot


@dataclass(frozen=True, slots=True)
class ExtractedText:
    text: str
    page_starts: tuple[int, ...] | None = None  # offset in ``text`` where each page starts; None: no pages
    number_of_pages: int | None = None


@dataclass(frozen=True, slots=True)
class TextChunk:
    index: int
    text: str
    page: int | None = None  # the 0-based page the chunk starts on


def detect_type(head: bytes, filename: str | None) -> DocumentType:
    """The document's type from its first bytes (and its name where the bytes cannot tell, e.g. Markdown);
    ``UnsupportedDocument`` for any other."""
    name = (filename or "").lower()
    ext = name.rsplit(".", 1)[-1] if "." in name else None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut at the end of the head is fine
            raise UnsupportedDocument("unsupported document type: the file is not UTF-8 text") from None
    return DocumentType("text/markdown" if ext in ("md", "markdown") else "text/plain", ext)


async def extract_text(data: bytes, kind: DocumentType, *, ocr: OcrLoader, max_pages: int) -> ExtractedText:
    """The document's text (Markdown where the format has structure). Raises ``UnsupportedDocument`` for a file
    that cannot be read (corrupt, encrypted, more than ``max_pages`` pages)."""
    try:
        return ExtractedText(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UnsupportedDocument("the file is not UTF-8 text") from None


def split_chunks(extracted: ExtractedText, chunk_size: int) -> list[TextChunk]:
    """Chunks of at most ``chunk_size`` characters."""
    text = extracted.text
    return [TextChunk(i, text[start:start + chunk_size])
            for i, start in enumerate(range(0, len(text), chunk_size)) if text[start:start + chunk_size].strip()]
