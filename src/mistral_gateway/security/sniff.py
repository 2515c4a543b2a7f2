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
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # an MPEG audio frame header (sync bits)
        layer = (head[1] >> 1) & 3
        return "audio/aac" if layer == 0 else "audio/mpeg"  # layer 0 is ADTS (AAC); 1-3 are MPEG layers III-I
    return None
