"""Image content parts of chat requests, for models with the 'vision' capability: decoded (data URLs) or fetched
(http/https URLs), checked, and attached to the normalised messages with their place in the text.

A fetched URL goes through the server's one fetcher (``security.fetch.SafeFetcher``): every address checked against
private ranges (unless ``fetch_allow`` permits it), the connection pinned to the checked address, redirects checked
hop by hop, bounded in bytes and time. Every image is bounded: bytes, pixels (read from its header, before anything
decodes it) and count per request.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from mistral_gateway.config import Settings
from mistral_gateway.engines.base import ChatMessage, ImageInput
from mistral_gateway.errors import BadRequest
from mistral_gateway.security.fetch import FetchPolicy, FetchRefused, SafeFetcher, decode_data_url

__all__ = ["ImageLimits", "ImageLoader", "sniff"]

_DETAILS = (None, "auto", "low", "high")
_ACCEPT = ("image/",)


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int
    per_request: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        return cls(settings.image_max_bytes, settings.image_max_pixels, settings.images_per_request)


class _Bad(Exception):
    """What is wrong with one image part; raised as a 400 naming the part."""


class ImageLoader:
    def __init__(self, limits: ImageLimits, fetcher: SafeFetcher) -> None:
        self.limits = limits
        self.fetcher = fetcher

    @classmethod
    def from_settings(cls, settings: Settings, fetcher: SafeFetcher | None = None) -> ImageLoader:
        """With ``fetcher`` (the container's), unless the deprecated ``allow_private_image_urls`` widens its policy
        for image URLs."""
        if fetcher is None or settings.allow_private_image_urls:
            policy = fetcher.policy if fetcher else FetchPolicy.from_settings(settings)
            fetcher = SafeFetcher(policy.allowing_everything() if settings.allow_private_image_urls else policy)
        return cls(ImageLimits.from_settings(settings), fetcher)

    async def attach(self, raw: Sequence[Any], messages: list[ChatMessage]) -> list[ChatMessage]:
        """``messages`` (normalised from ``raw``, the request's messages, one for one) with the images of ``raw``
        attached. Each image's offset is the length of the text parts before it (the normaliser joins them)."""
        found: list[tuple[int, int, int, str]] = []  # message index, part index, offset, url
        for i, message in enumerate(raw):
            content = message.content if isinstance(message.content, list) else []
            offset = 0
            for j, part in enumerate(content):
                if part.type == "text":
                    offset += len(part.text)
                elif part.type == "image_url":
                    where = f"messages[{i}].content[{j}]"
                    if message.role != "user":
                        raise _error(where, "images are accepted in user messages only")
                    if len(found) >= self.limits.per_request:
                        raise _error(where, f"more than {self.limits.per_request} images in one request")
                    found.append((i, j, offset, _url_of(part.image_url, where)))
        if not found:
            return messages
        try:  # concurrently; the first failure cancels the other fetches
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._load(url, f"messages[{i}].content[{j}]")) for i, j, _, url in found]
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        loaded = [task.result() for task in tasks]
        images: dict[int, list[ImageInput]] = {}
        for (i, _, offset, _), (data, mime) in zip(found, loaded, strict=True):
            images.setdefault(i, []).append(ImageInput(data, offset, mime))
        return [replace(m, images=tuple(images[i])) if i in images else m for i, m in enumerate(messages)]

    async def _load(self, url: str, where: str) -> tuple[bytes, str]:
        try:
            if url[:5].lower() == "data:":
                data = decode_data_url(url, what="image_url", max_bytes=self.limits.max_bytes).data
            elif url.partition(":")[0].lower() in ("http", "https"):
                data = (await self.fetcher.fetch(url, what="image_url", max_bytes=self.limits.max_bytes,
                                                  accept=_ACCEPT)).data
            else:
                raise _Bad("image_url must be an http(s) URL or a base64 data URL")
            mime, width, height = sniff(data)
        except (_Bad, FetchRefused) as exc:
            raise _error(where, str(exc)) from None
        if not width or not height:
            raise _error(where, "the image header says it has no pixels")
        if width * height > self.limits.max_pixels:
            raise _error(where, f"the image is {width}x{height} pixels; at most {self.limits.max_pixels} are accepted")
        return data, mime


def _url_of(value: Any, where: str) -> str:
    if isinstance(value, dict):
        extra = set(value) - {"url", "detail"}
        if extra:
            raise _error(where, f"image_url has unknown fields {sorted(extra)}")
        if value.get("detail") not in _DETAILS:
            raise _error(where, "image_url.detail must be 'auto', 'low' or 'high'")
        value = value.get("url")
    if not isinstance(value, str) or not value:
        raise _error(where, "image_url must be a URL string or an object with a 'url' string")
    return value


def sniff(data: bytes) -> tuple[str, int, int]:
    """The image's type and size from its header (png, jpeg, webp or gif); raises for anything else."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return ("image/png", *struct.unpack(">II", data[16:24]))
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return ("image/gif", *struct.unpack("<HH", data[6:10]))
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return ("image/webp", *_webp_size(data))
        if data[:3] == b"\xff\xd8\xff":
            return ("image/jpeg", *_jpeg_size(data))
    except (struct.error, IndexError):
        pass
    raise _Bad("not a png, jpeg, webp or gif image (or its header is damaged)")


def _webp_size(data: bytes) -> tuple[int, int]:
    kind = data[12:16]
    if kind == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise IndexError(kind)


def _jpeg_size(data: bytes) -> tuple[int, int]:
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            break
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame segment
            height, width = struct.unpack(">HH", data[at + 5:at + 9])
            return width, height
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            at += 2
            continue
        at += 2 + struct.unpack(">H", data[at + 2:at + 4])[0]
    raise IndexError("no frame header")


def _error(where: str, problem: str) -> BadRequest:
    return BadRequest(f"{where}: {problem}", code="INVALID_IMAGE", param="messages")
