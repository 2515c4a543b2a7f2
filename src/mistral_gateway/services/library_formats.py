"""The shapes shared by a library document's text extraction and chunking (``library_text``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DOCX", "DocumentType", "ExtractedText", "TextChunk", "UnsupportedDocument"]


class UnsupportedDocument(ValueError):
    """The document cannot be read; the message says why and is safe to show to the uploader."""


@dataclass(frozen=True, slots=True)
class DocumentType:
    mime_type: str  # the standard MIME type
    extension: str | None  # without the dot


DOCX = DocumentType("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx")


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
