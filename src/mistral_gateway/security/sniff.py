"""What a body is, from its first bytes: fetched and uploaded content is judged by its magic bytes, not by the
label a server or client put on it (a PDF served as application/octet-stream still works; an HTML error page
served as image/png does not)."""

from __future__ import annotations

__all__ = ["sniff_kind"]

_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"ID3", "audio/mpeg"),
    (b"fLaC", "audio/flac"),
    (b"OggS", "audio/ogg"),
    (b"\x1a\x45\xdf\xa3", "audio/webm"),  # EBML: WebM / Matroska; callers taking it read the audio track
)


def sniff_kind(data: bytes) -> str | None:
    """The MIME type of ``data`` by its magic bytes (PDF, PNG, JPEG, WebP, TIFF, GIF; WAV, MP3/AAC, FLAC, Ogg,
    MP4/M4A, WebM), or None for anything else. Containers that may hold video (MP4, WebM) are reported as audio/*,
    because the callers that take them use the audio."""
    head = bytes(data[:16])
    for prefix, kind in _PREFIXES:
        if head.startswith(prefix):
            return kind
    if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"WEBP"):
        return "audio/wav" if head[8:12] == b"WAVE" else "image/webp"
    if head[4:8] == b"ftyp":
        return "audio/mp4"
    if len(head) >= 3 and head[0] == 0xFF:
        return _frame(head[1], head[2])
    return None


def _frame(second: int, third: int) -> str | None:
    """An MPEG audio (MP3) or ADTS (AAC) frame header after its 0xFF, checked field by field, so that other data
    starting with 0xFF (a UTF-16 byte order mark, say) is not taken for audio."""
    if second & 0xF6 == 0xF0:  # ADTS: sync, MPEG-4/2 id, layer 00
        return "audio/aac"
    version, layer = (second >> 3) & 3, (second >> 1) & 3
    if second & 0xE0 != 0xE0 or version == 1 or layer == 0 or second == 0xFE:
        return None
    return "audio/mpeg" if third >> 4 not in (0, 15) and (third >> 2) & 3 != 3 else None
