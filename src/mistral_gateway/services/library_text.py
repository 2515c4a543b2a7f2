"""A library document's text: its type recognised at upload, its text extracted when processed, then chunked.

Formats: PDF (its text layer; scanned pages through the OCR engine) and images (PNG, JPEG, WebP, TIFF: OCR), DOCX
(``library_docx``), HTML (``library_html``), Markdown and plain text (UTF-8, or UTF-16 with a byte order mark).
Types are recognised by their bytes; the name decides only between Markdown and plain text, which bytes cannot.
Chunking is in ``library_chunks``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from anyio.to_thread import run_sync

from mistral_gateway.engines.base import InvalidInput, OcrEngine, OcrOptions
from mistral_gateway.services.library_chunks import split_chunks
from mistral_gateway.services.library_docx import docx_markdown, zip_kind
from mistral_gateway.services.library_formats import (
    DOCX,
    DocumentType,
    ExtractedText,
    TextChunk,
    UnsupportedDocument,
)
from mistral_gateway.services.library_html import html_charset, html_markdown

__all__ = ["DOCX", "DocumentType", "ExtractedText", "TextChunk", "UnsupportedDocument", "detect_type",
           "extract_text", "split_chunks"]

OcrLoader = Callable[[], Awaitable[OcrEngine]]

_IMAGES = (("image/png", "png", (b"\x89PNG\r\n\x1a\n",)), ("image/jpeg", "jpg", (b"\xff\xd8\xff",)),
           ("image/tiff", "tiff", (b"II*\x00", b"MM\x00*")))
# Bytes we can name when refusing them: the uploader learns what was sent rather than "not text".
_REFUSED = ((b"MZ", "a Windows executable"), (b"\x7fELF", "an ELF executable"), (b"\xca\xfe\xba\xbe", "a program"),
            (b"\xcf\xfa\xed\xfe", "a program"), (b"\x1f\x8b", "a gzip archive"), (b"BZh", "a bzip2 archive"),
            (b"\xfd7zXZ\x00", "an xz archive"), (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
            (b"Rar!\x1a\x07", "a RAR archive"), (b"GIF8", "a GIF image (send PNG, JPEG, WebP or TIFF)"),
            (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy or encrypted Office file (save it as DOCX without a "
                                                   "password)"),
            (b"{\\rtf", "an RTF document (save it as DOCX)"), (b"\x00\x00\x01\x00", "an icon"),
            (b"OggS", "an audio file"), (b"ID3", "an audio file"), (b"fLaC", "an audio file"))
_HTML = re.compile(r"\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>]|head[\s>]|body[\s>])",
                   re.I | re.S)
_HTML_NAMES = ("html", "htm", "xhtml")
_MARKDOWN_NAMES = ("md", "markdown", "mdown", "mkd")
_PAGES = re.compile(r"^(\d+) pages selected")


def detect_type(head: bytes, filename: str | None) -> DocumentType:
    """The document's type from its first bytes (``head``, the first ~64 KiB), and its name only where the bytes
    cannot tell (Markdown or plain text); ``UnsupportedDocument`` for any other."""
    name = (filename or "").lower().rsplit("/", 1)[-1]
    ext = name.rsplit(".", 1)[-1][:16] if "." in name else None
    if b"%PDF-" in head[:1024]:  # as PDF readers do: the header anywhere in the first kilobyte
        return DocumentType("application/pdf", "pdf")
    for mime, default_ext, magics in _IMAGES:
        if head.startswith(magics):
            return DocumentType(mime, ext if ext in _image_names(default_ext) else default_ext)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return DocumentType("image/webp", "webp")
    if head.startswith(b"PK\x03\x04"):
        return _zip_type(head, ext)
    for magic, what in _REFUSED:
        if head.startswith(magic):
            raise UnsupportedDocument(f"unsupported document type: the file is {what}")
    text = _head_text(head)
    if _HTML.match(text[:4096]) or (ext in _HTML_NAMES and text.lstrip().startswith("<")):
        return DocumentType("text/html", ext if ext in _HTML_NAMES else "html")
    return DocumentType("text/markdown" if ext in _MARKDOWN_NAMES else "text/plain", ext)


def _image_names(ext: str) -> tuple[str, ...]:
    return {"jpg": ("jpg", "jpeg", "jpe"), "tiff": ("tiff", "tif")}.get(ext, (ext,))


def _zip_type(head: bytes, ext: str | None) -> DocumentType:
    kind = zip_kind(head)
    if kind == "docx" or (kind is None and ext == "docx"):  # the head may end before the names tell
        return DOCX
    what = {"xlsx": "an Excel workbook (XLSX)", "pptx": "a PowerPoint presentation (PPTX)",
            "odf": "an OpenDocument file (save it as DOCX)", "epub": "an EPUB book"}.get(kind or "", "a ZIP archive")
    raise UnsupportedDocument(f"unsupported document type: the file is {what}, not a DOCX document")


def _head_text(head: bytes) -> str:
    """The head decoded as text, or ``UnsupportedDocument``: binary data is refused here, at upload."""
    try:
        text = decode_text(head, partial=True)
    except UnicodeDecodeError:
        raise UnsupportedDocument("unsupported document type: the file is neither a PDF, an image, a DOCX "
                                  "document nor UTF-8 text") from None
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f\v")
    if "\x00" in text or controls > max(8, len(text) // 100):
        raise UnsupportedDocument("unsupported document type: the file is binary data, not text")
    return text


def decode_text(data: bytes, *, partial: bool = False) -> str:
    """UTF-8 (a byte order mark dropped), or UTF-16 with its byte order mark. ``partial``: the bytes are the head
    of a longer file, so a character cut at their end is not an error."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        codec, body = ("utf-16-le" if data[:2] == b"\xff\xfe" else "utf-16-be"), data[2:]
        if partial:
            body = body[:len(body) - len(body) % 2]
            return body.decode(codec, errors="ignore")  # a surrogate pair cut at the end only
        return body.decode(codec)
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        if partial and exc.start >= len(body) - 3 and exc.reason == "unexpected end of data":
            return body[:exc.start].decode("utf-8")
        raise


async def extract_text(data: bytes, kind: DocumentType, *, ocr: OcrLoader, max_pages: int) -> ExtractedText:
    """The document's text (Markdown where the format has structure). Raises ``UnsupportedDocument`` for a file
    that cannot be read (corrupt, encrypted, more than ``max_pages`` pages, no text in it)."""
    mime = kind.mime_type
    if mime == "application/pdf" or mime.startswith("image/"):
        extracted = await _ocr_text(data, ocr, max_pages)
    else:  # parsing a large file takes seconds: off the event loop, which serves the API meanwhile
        extracted = ExtractedText(await run_sync(_markup_text, data, mime))
    if not extracted.text.strip():
        raise UnsupportedDocument("no text could be extracted from the document"
                                  + (" (an image or a scan without readable text)" if extracted.number_of_pages
                                     else ""))
    return extracted


def _markup_text(data: bytes, mime: str) -> str:
    if mime == DOCX.mime_type:
        return docx_markdown(data)
    if mime == "text/html":
        return html_markdown(data.decode(html_charset(data), errors="replace"))
    try:
        return decode_text(data).replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError:
        raise UnsupportedDocument("the file is not UTF-8 text (nor UTF-16 with a byte order mark)") from None


async def _ocr_text(data: bytes, ocr: OcrLoader, max_pages: int) -> ExtractedText:
    engine = await ocr()
    try:  # images are not kept: a library indexes text
        pages = await engine.read(data, OcrOptions(max_pages=max_pages, image_limit=0))
    except InvalidInput as exc:
        many = _PAGES.match(str(exc))
        if many:
            raise UnsupportedDocument(f"the document has {many.group(1)} pages; a library reads at most "
                                      f"{max_pages} pages of a document") from None
        raise UnsupportedDocument(str(exc)) from None
    parts: list[str] = []
    starts: list[int] = []
    offset = 0
    for page in pages:
        starts.append(offset)
        text = page.markdown.strip()
        parts.append(text)
        offset += len(text) + 2
    return ExtractedText("\n\n".join(parts), tuple(starts), len(pages))
