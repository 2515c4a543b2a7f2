"""Image content parts of chat requests, for models with the 'vision' capability: decoded (data URLs) or fetched
(http/https URLs), checked, and attached to the normalised messages with their place in the text.

A fetched URL is checked like every URL the server fetches (``security.netcheck``): its host is resolved once,
every address must be public (unless ``allow_private_image_urls``), and the connection goes to the checked address
(the URL's host stays in the Host header and TLS SNI), so a DNS answer that changes between check and connect
cannot reach another host. Redirects are followed by hand, each hop checked the same way. Every image is bounded:
bytes, pixels (read from its header, before anything decodes it), count per request, and fetch time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from mistral_gateway.config import Settings
from mistral_gateway.engines.base import ChatMessage, ImageInput
from mistral_gateway.errors import BadRequest
from mistral_gateway.security.netcheck import PrivateAddressError, resolve_url

__all__ = ["ImageLimits", "ImageLoader", "sniff"]

Resolver = Callable[..., list[str]]  # (url, *, allow_private) -> checked addresses; raises PrivateAddressError
_DETAILS = (None, "auto", "low", "high")
_CONTENT_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int
    per_request: int
    timeout: float
    max_redirects: int
    allow_private: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        return cls(settings.image_max_bytes, settings.image_max_pixels, settings.images_per_request,
                   settings.image_fetch_timeout, settings.image_max_redirects, settings.allow_private_image_urls)


class _Bad(Exception):
    """What is wrong with one image part; raised as a 400 naming the part."""


class ImageLoader:
    def __init__(self, limits: ImageLimits, *, resolver: Resolver = resolve_url,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.limits = limits
        self._resolve = resolver
        self._transport = transport  # tests only

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
            data = _data_url(url, self.limits.max_bytes) if url[:5].lower() == "data:" else await self._fetch(url)
            mime, width, height = sniff(data)
        except _Bad as exc:
            raise _error(where, str(exc)) from None
        if not width or not height:
            raise _error(where, "the image header says it has no pixels")
        if width * height > self.limits.max_pixels:
            raise _error(where, f"the image is {width}x{height} pixels; at most {self.limits.max_pixels} are accepted")
        return data, mime

    async def _fetch(self, url: str) -> bytes:
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise _Bad("image_url must be an http(s) URL or a base64 data URL")
        try:
            async with asyncio.timeout(self.limits.timeout), httpx.AsyncClient(
                    transport=self._transport, trust_env=False, follow_redirects=False,
                    timeout=self.limits.timeout) as client:
                for _ in range(self.limits.max_redirects + 1):
                    target = await self._pinned(url)
                    async with client.stream("GET", target.url, headers=target.headers,
                                             extensions=target.extensions) as response:
                        if response.is_redirect and "location" in response.headers:
                            url = urljoin(url, response.headers["location"])
                            continue
                        return await self._body(response)
                raise _Bad(f"the image URL redirected more than {self.limits.max_redirects} times")
        except TimeoutError:
            raise _Bad(f"fetching the image URL took longer than {self.limits.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise _Bad(f"the image URL could not be fetched ({type(exc).__name__})") from None

    async def _pinned(self, url: str) -> _Target:
        try:
            addresses = await asyncio.to_thread(self._resolve, url, allow_private=self.limits.allow_private)
        except PrivateAddressError as exc:
            raise _Bad(f"the image URL is refused: {exc}") from None
        return _Target.to(url, addresses[0])

    async def _body(self, response: httpx.Response) -> bytes:
        if response.status_code != 200:
            raise _Bad(f"the image URL answered HTTP {response.status_code}")
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind and not kind.startswith(_CONTENT_TYPES):
            raise _Bad(f"the image URL served {kind!r}, not an image")
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.limits.max_bytes:
            raise _Bad(f"the image is {int(length)} bytes; at most {self.limits.max_bytes} are accepted")
        data = bytearray()
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > self.limits.max_bytes:
                raise _Bad(f"the image is larger than {self.limits.max_bytes} bytes")
        return bytes(data)


@dataclass(frozen=True)
class _Target:
    """A request for ``url`` sent to one checked address: the URL's host kept in Host and, for https, SNI (so
    certificates are verified against the name)."""

    url: str
    headers: dict[str, str]
    extensions: dict[str, Any]

    @classmethod
    def to(cls, url: str, address: str) -> _Target:
        parts = urlsplit(url)
        host = f"[{address}]" if ":" in address else address
        netloc = f"{host}:{parts.port}" if parts.port else host
        name = parts.netloc.rpartition("@")[2]  # credentials in the URL are not sent
        extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
        return cls(urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")),
                   {"Host": name, "Accept": "image/*", "Accept-Encoding": "identity"}, extensions)


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


def _data_url(url: str, max_bytes: int) -> bytes:
    header, comma, payload = url[5:].partition(",")
    if not comma or not header.lower().endswith(";base64"):
        raise _Bad("a data URL must be base64-encoded (data:image/png;base64,...)")
    if len(payload) > (max_bytes + 2) // 3 * 4:
        raise _Bad(f"the image is larger than {max_bytes} bytes")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _Bad("the data URL is not valid base64") from None


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
