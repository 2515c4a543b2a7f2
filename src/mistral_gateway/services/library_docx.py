"""DOCX to Markdown with the standard library (zipfile and ElementTree): paragraphs, headings as ``#`` lines, list
items, tables as Markdown rows. Also ``zip_kind``: what a ZIP file is, from its first bytes only (at upload).

Bounded: each XML part is read up to ``MAX_PART_BYTES`` decompressed (a zip bomb stops there) and a part with a
DTD is refused (entity expansion); the archive's other members are never read.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from xml.etree import ElementTree

from mistral_gateway.services.library_formats import UnsupportedDocument

__all__ = ["MAX_PART_BYTES", "docx_markdown", "zip_kind"]

MAX_PART_BYTES = 64 * 1024 * 1024
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_HEADING_NAME = re.compile(r"heading\s*([1-9])$")
_TYPES = (("wordprocessingml.document", "docx"), ("ms-word.", "docx"), ("spreadsheetml", "xlsx"),
          ("ms-excel.", "xlsx"), ("presentationml", "pptx"), ("ms-powerpoint.", "pptx"))


def zip_kind(head: bytes) -> str | None:
    """``docx``, ``xlsx``, ``pptx``, ``odf``, ``epub``, ``zip`` (a ZIP archive of something else) or None when the
    head ends before its members tell. Reads the local headers at the start of the archive (the central directory
    is at its end, beyond the head)."""
    offset = 0
    while offset + _LOCAL_HEADER.size <= len(head):
        sig, _, flags, method, _, _, _, csize, _, name_len, extra_len = _LOCAL_HEADER.unpack_from(head, offset)
        if sig == b"PK\x01\x02":
            return "zip"  # the central directory: every member was seen, none made it a known document
        if sig != b"PK\x03\x04":
            break
        start = offset + _LOCAL_HEADER.size + name_len + extra_len
        name = head[offset + _LOCAL_HEADER.size:offset + _LOCAL_HEADER.size + name_len].decode("utf-8", "replace")
        body = head[start:start + csize] if not flags & 8 else b""
        kind = _member_kind(name, method, body)
        if kind:
            return kind
        if flags & 8 or start + csize > len(head):  # sizes after the data, or the data runs past the head
            break
        offset = start + csize
    return None


def _member_kind(name: str, method: int, body: bytes) -> str | None:
    if name == "word/document.xml":
        return "docx"
    if name.startswith("xl/"):
        return "xlsx"
    if name.startswith("ppt/"):
        return "pptx"
    if name == "mimetype" and method == 0:
        return "epub" if body.startswith(b"application/epub") else "odf"
    if name == "[Content_Types].xml" and body:
        try:
            text = (zlib.decompressobj(-15).decompress(body, 1 << 20) if method == 8 else body).decode("utf-8",
                                                                                                      "replace")
        except zlib.error:
            return None
        main = re.search(r'ContentType="application/vnd\.[^"]*main\+xml"', text)
        if main:
            return next((kind for marker, kind in _TYPES if marker in main.group(0)), "zip")
    return None


def docx_markdown(data: bytes) -> str:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError):
        raise UnsupportedDocument("the DOCX document is damaged: it is not a readable ZIP archive") from None
    with archive:
        names = set(archive.namelist())
        if "word/document.xml" not in names:
            raise UnsupportedDocument("the file is not a DOCX document: it has no word/document.xml")
        document = _part(archive, "word/document.xml")
        styles = _style_levels(_part(archive, "word/styles.xml")) if "word/styles.xml" in names else {}
    body = next((el for el in document if _local(el.tag) == "body"), document)
    return "\n\n".join(block for block in _blocks(body, styles) if block.strip())


def _part(archive: zipfile.ZipFile, name: str) -> ElementTree.Element:
    try:
        with archive.open(name) as member:
            data = member.read(MAX_PART_BYTES + 1)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError):
        raise UnsupportedDocument(f"the DOCX document is damaged: {name} cannot be read") from None
    except RuntimeError:  # zipfile's word for an encrypted member
        raise UnsupportedDocument("the DOCX document is encrypted: send it without a password") from None
    if len(data) > MAX_PART_BYTES:
        raise UnsupportedDocument(f"the DOCX document is too large: {name} holds more than "
                                  f"{MAX_PART_BYTES // (1024 * 1024)} MiB of XML")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:  # OOXML has no DTD: one here could only expand entities
        raise UnsupportedDocument(f"the DOCX document is not valid: {name} declares a DTD")
    try:
        return ElementTree.fromstring(data)  # noqa: S314 -- no DTD (refused above), so no entity to expand
    except ElementTree.ParseError:
        raise UnsupportedDocument(f"the DOCX document is damaged: {name} is not well-formed XML") from None


def _local(tag: str) -> str:
    """The tag without its namespace (transitional and strict OOXML use different ones)."""
    return tag.rsplit("}", 1)[-1]


def _attr(el: ElementTree.Element | None, name: str) -> str | None:
    if el is None:
        return None
    return next((v for k, v in el.attrib.items() if _local(k) == name), None)


def _child(el: ElementTree.Element | None, name: str) -> ElementTree.Element | None:
    if el is None:
        return None
    return next((c for c in el if _local(c.tag) == name), None)


def _style_levels(styles: ElementTree.Element) -> dict[str, int]:
    """Heading level by paragraph style id: the style's name ("heading 2", "Title") or its outline level, or its
    base style's (ids are localised, e.g. "berschrift1"; names are not)."""
    own: dict[str, int | None] = {}
    based: dict[str, str] = {}
    for style in styles:
        if _local(style.tag) != "style" or _attr(style, "type") != "paragraph":
            continue
        sid = _attr(style, "styleId") or ""
        name = (_attr(_child(style, "name"), "val") or "").strip().lower()
        outline = _attr(_child(_child(style, "pPr"), "outlineLvl"), "val")
        heading = _HEADING_NAME.match(name)
        own[sid] = (int(heading.group(1)) if heading else 1 if name == "title"
                    else int(outline) + 1 if outline and outline.isdigit() and int(outline) < 9 else None)
        base = _attr(_child(style, "basedOn"), "val")
        if base:
            based[sid] = base
    levels: dict[str, int] = {}
    for sid in own:
        current: str | None = sid
        for _ in range(10):  # a chain of bases, bounded (a cycle ends here)
            if current is None or own.get(current) is not None:
                break
            current = based.get(current)
        level = own.get(current) if current is not None else None
        if level:
            levels[sid] = level
    return levels


def _blocks(container: ElementTree.Element, styles: dict[str, int]) -> list[str]:
    out: list[str] = []
    for el in container:
        kind = _local(el.tag)
        if kind == "p":
            out.append(_paragraph(el, styles))
        elif kind == "tbl":
            out.append(_table(el))
        elif kind != "sectPr":
            out += _blocks(el, styles)  # content controls, custom XML, tracked insertions: their paragraphs
    return out


def _text(el: ElementTree.Element) -> str:
    parts: list[str] = []
    for node in el.iter():
        kind = _local(node.tag)
        if kind == "t" and node.text:
            parts.append(node.text)
        elif kind == "tab":
            parts.append("\t")
        elif kind in ("br", "cr"):
            parts.append("\n")
    return "".join(parts).strip()


def _paragraph(p: ElementTree.Element, styles: dict[str, int]) -> str:
    text = _text(p)
    if not text:
        return ""
    props = _child(p, "pPr")
    outline = _attr(_child(props, "outlineLvl"), "val")
    level = styles.get(_attr(_child(props, "pStyle"), "val") or "") or (
        int(outline) + 1 if outline and outline.isdigit() and int(outline) < 9 else None)
    if level:
        return "#" * min(level, 6) + " " + " ".join(text.split())
    numbering = _child(props, "numPr")
    if numbering is not None:
        depth = _attr(_child(numbering, "ilvl"), "val")
        return "  " * min(int(depth) if depth and depth.isdigit() else 0, 8) + "- " + text
    return text


def _table(table: ElementTree.Element) -> str:
    rows = []
    for tr in (c for c in table if _local(c.tag) == "tr"):
        cells = [" ".join(_text(tc).split()).replace("|", "\\|") for tc in tr if _local(tc.tag) == "tc"]
        if any(cells):
            rows.append(cells)
    if not rows:
        return ""
    width = max(len(r) for r in rows)
    lines = ["| " + " | ".join(r + [""] * (width - len(r))) + " |" for r in rows]
    lines.insert(1, "|" + " --- |" * width)
    return "\n".join(lines)
