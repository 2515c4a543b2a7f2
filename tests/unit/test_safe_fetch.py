"""The shared fetcher (security/fetch.py) against real HTTP servers on loopback: one test per refused case (each
also showing the server was never reached), what the allow-list lets through, pinning to the checked address across
DNS changes, limits, content types, data URLs and sniffing."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import ValidationError

from mistral_gateway.config import Settings, load_settings
from mistral_gateway.security.allowlist import AllowList
from mistral_gateway.security.fetch import Fetched, FetchPolicy, FetchRefused, SafeFetcher, decode_data_url
from mistral_gateway.security.netcheck import PrivateAddressError, resolve_url
from mistral_gateway.security.sniff import sniff_kind
from url_server import UrlServer
from vision_assets import png

PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\n%%EOF\n"
PNG = png(2, 2)
ROUTES = {"/doc.pdf": (200, "application/pdf", PDF), "/raw": (200, "application/octet-stream", PDF),
          "/img.png": (200, "image/png", PNG), "/page": (200, "text/html; charset=utf-8", b"<html>oops</html>"),
          "/pdf-as-png": (200, "image/png", PDF), "/big": (200, "application/pdf", PDF + bytes(2000)),
          "/gone": (404, "text/plain", b"no")}


@pytest.fixture
def server() -> Iterator[UrlServer]:
    with UrlServer(ROUTES) as running:
        yield running


@pytest.fixture
def other() -> Iterator[UrlServer]:
    with UrlServer(ROUTES) as running:
        yield running


class Recording(httpx.AsyncBaseTransport):
    """The real transport, recording every request that reaches it (so a refusal is shown to happen before any
    connection, also for addresses no test server listens on)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(str(request.url))
        return await self._inner.handle_async_request(request)


def fetcher(*allow: str, resolver: Any = resolve_url, timeout: float = 5.0, redirects: int = 2,
            transport: httpx.AsyncBaseTransport | None = None) -> SafeFetcher:
    return SafeFetcher(FetchPolicy(timeout, redirects, AllowList.parse(allow)), resolver=resolver,
                       transport=transport)


def fetch(safe: SafeFetcher, url: str, *, accept: tuple[str, ...] = ("application/pdf",),
          max_bytes: int = 1024) -> Fetched:
    return asyncio.run(safe.fetch(url, what="document_url", max_bytes=max_bytes, accept=accept))


def refused(safe: SafeFetcher, url: str, **kw: Any) -> str:
    with pytest.raises(FetchRefused) as info:
        fetch(safe, url, **kw)
    message = str(info.value)
    assert message.startswith(("document_url ", "fetching document_url ", "the body of document_url "))
    return message


def names(table: dict[str, list[str]], calls: list[str] | None = None) -> Any:
    """A resolver for names in no DNS (``table``: host -> answers, one answer list per call, the last repeated);
    every other host is resolved for real. Records each call in ``calls``."""
    served: dict[str, int] = {}

    def resolve(url: str, *, allow_private: bool) -> list[str]:
        host = urlsplit(url).hostname or ""
        if calls is not None:
            calls.append(url)
        if host in table:
            served[host] = served.get(host, 0) + 1
            return [table[host][min(served[host], len(table[host])) - 1]]
        return resolve_url(url, allow_private=allow_private)
    return resolve


# -- what is fetched ----------------------------------------------------------------------------------------------

def test_an_allowed_network_lets_a_loopback_server_through(server: UrlServer) -> None:
    got = fetch(fetcher("127.0.0.0/8"), server.url("/doc.pdf"))
    assert got == Fetched(PDF, "application/pdf", server.url("/doc.pdf"))
    assert [path for path, _ in server.seen] == ["/doc.pdf"]


def test_an_allowed_host_port_lets_that_server_through_only(server: UrlServer, other: UrlServer) -> None:
    safe = fetcher(f"127.0.0.1:{server.port}")
    assert fetch(safe, server.url("/doc.pdf")).data == PDF
    assert "is refused" in refused(safe, other.url("/doc.pdf"))
    assert other.seen == []


def test_an_ipv6_loopback_server_needs_its_own_entry() -> None:
    with UrlServer(ROUTES, host="::1") as v6:
        assert "is refused" in refused(fetcher("127.0.0.0/8"), v6.url("/doc.pdf"))
        assert v6.seen == []
        assert fetch(fetcher("::1/128"), v6.url("/doc.pdf")).data == PDF


def test_an_ipv4_mapped_address_is_allowed_by_its_ipv4_network(server: UrlServer) -> None:
    assert fetch(fetcher("127.0.0.0/8"), f"http://[::ffff:127.0.0.1]:{server.port}/doc.pdf").data == PDF


def test_octet_stream_is_taken_and_sniffed(server: UrlServer) -> None:
    got = fetch(fetcher("127.0.0.0/8"), server.url("/raw"))
    assert (got.data, got.content_type) == (PDF, "application/pdf")


def test_redirects_are_followed_and_the_final_url_reported(server: UrlServer) -> None:
    got = fetch(fetcher("127.0.0.0/8"), server.url(f"/to/{server.url('/to/')}{server.url('/doc.pdf')}"))
    assert got.url == server.url("/doc.pdf") and got.data == PDF
    assert len(server.seen) == 3


# -- refused before any connection --------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x.pdf", "gopher://127.0.0.1:70/1",
                                 "data:application/pdf;base64,JVBERi0=", "javascript:alert(1)", "http:///nohost",
                                 "//127.0.0.1/x", "http://127.0.0.1:99999/x"])
def test_only_http_and_https_urls_with_a_host(url: str) -> None:
    transport = Recording()
    message = refused(fetcher("0.0.0.0/0", transport=transport), url)
    assert "only http and https" in message or "not a valid URL" in message
    assert transport.sent == []


@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.8.9.10", "[::1]", "localhost",  # loopback
    "10.0.0.1", "172.16.0.1", "172.31.255.254", "192.168.1.1",  # private
    "169.254.169.254", "[fe80::1]", "100.64.0.1", "100.127.255.254",  # link-local (cloud metadata), CGNAT
    "224.0.0.1", "239.255.255.250", "[ff02::1]",  # multicast
    "240.0.0.1", "255.255.255.255", "0.0.0.0", "[::]", "[fc00::1]",  # reserved, broadcast, unspecified, ULA  # noqa: S104
    "[::ffff:127.0.0.1]", "[::ffff:10.0.0.1]", "[64:ff9b::a00:1]", "[2002:7f00:1::]",  # IPv4 inside IPv6
    "2130706433", "0x7f.1", "0177.0.0.1", "127.1", "0x7f000001", "017700000001",  # legacy IPv4 spellings
])
def test_private_and_reserved_addresses_are_refused(server: UrlServer, host: str) -> None:
    transport = Recording()
    message = refused(fetcher(transport=transport), f"http://{host}:{server.port}/doc.pdf")
    assert "is refused" in message and "private" in message
    assert transport.sent == [] and server.seen == []


@pytest.mark.parametrize("answers", [["10.1.2.3"], ["8.8.8.8", "192.168.0.7"], ["::ffff:169.254.169.254"]])
def test_a_name_resolving_to_a_private_address_is_refused(server: UrlServer, answers: list[str]) -> None:
    transport = Recording()
    safe = fetcher(resolver=lambda url, *, allow_private: answers, transport=transport)
    assert "is refused" in refused(safe, f"http://docs.example:{server.port}/doc.pdf")
    assert transport.sent == []


def test_an_unresolvable_name_is_refused(server: UrlServer) -> None:
    def fail(url: str, *, allow_private: bool) -> list[str]:
        raise PrivateAddressError("no such host")
    assert "cannot be resolved" in refused(fetcher(resolver=fail), f"http://nowhere.test:{server.port}/doc.pdf")


def test_a_redirect_from_an_allowed_server_to_another_is_refused(server: UrlServer, other: UrlServer) -> None:
    safe = fetcher(f"127.0.0.1:{server.port}")
    for target in (other.url("/doc.pdf"), f"http://localhost:{other.port}/doc.pdf", "file:///etc/passwd",
                   "http://169.254.169.254/latest/meta-data/"):
        assert "is refused" in refused(safe, server.url(f"/to/{target}"))
    assert other.seen == [] and len(server.seen) == 4  # each first hop only


# -- DNS answers that change: resolved once per hop, the connection goes to the checked address -------------------

def test_the_connection_goes_to_the_checked_address(server: UrlServer) -> None:
    calls: list[str] = []
    # first answer: the (allowed) server; any later answer: the cloud metadata address
    safe = fetcher("127.0.0.1/32", resolver=names({"docs.test": ["127.0.0.1", "169.254.169.254"]}, calls))
    url = f"http://docs.test:{server.port}/doc.pdf"
    assert fetch(safe, url).data == PDF
    # docs.test is in no DNS: the connection used the checked address, and the Host header kept the name
    assert calls == [url] and server.seen == [("/doc.pdf", f"docs.test:{server.port}")]


def test_each_redirect_hop_is_resolved_and_checked_again(server: UrlServer) -> None:
    calls: list[str] = []
    safe = fetcher("127.0.0.1/32", resolver=names({"docs.test": ["127.0.0.1", "10.0.0.5"]}, calls))
    first = f"http://docs.test:{server.port}/to/http://docs.test:PORT/doc.pdf"
    assert "10.0.0.5" in refused(safe, first)  # the second hop's answer changed to a private address
    assert calls == [first, f"http://docs.test:{server.port}/doc.pdf"]
    assert [path for path, _ in server.seen] == ["/to/http://docs.test:PORT/doc.pdf"]


# -- limits and content ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "accept", "problem"), [
    ("/big", ("application/pdf",), "is 2035 bytes; at most 1024 are accepted"),  # Content-Length
    ("/chunked/5000", ("application/pdf",), "the body of document_url is larger than 1024 bytes"),  # streamed
    ("/page", ("application/pdf",), "served 'text/html', which is not accepted"),
    ("/pdf-as-png", ("image/",), "served 'application/pdf' content"),  # labelled image/png, sniffed as a PDF
    ("/img.png", ("application/pdf",), "served 'image/png'"),
    ("/gone", ("application/pdf",), "answered HTTP 404"),
    ("/to/http://127.0.0.1:PORT/to/http://127.0.0.1:PORT/to/http://127.0.0.1:PORT/doc.pdf", ("application/pdf",),
     "redirected more than 2 times"),
])
def test_limits_and_content_types(server: UrlServer, path: str, accept: tuple[str, ...], problem: str) -> None:
    assert problem in refused(fetcher("127.0.0.0/8"), server.url(path), accept=accept)


def test_too_slow_is_refused(server: UrlServer) -> None:
    assert "took longer than 0.3 s" in refused(fetcher("127.0.0.0/8", timeout=0.3), server.url("/stall"))


def test_an_unreachable_server_is_refused_not_raised() -> None:
    with UrlServer() as gone:
        url = gone.url("/doc.pdf")
    assert "could not be fetched (ConnectError)" in refused(fetcher("127.0.0.0/8"), url)


def test_credentials_in_the_url_are_not_sent(server: UrlServer) -> None:
    fetch(fetcher("127.0.0.0/8"), f"http://user:secret@127.0.0.1:{server.port}/doc.pdf")
    assert server.seen == [("/doc.pdf", f"127.0.0.1:{server.port}")]


# -- data URLs ---------------------------------------------------------------------------------------------------

def test_data_urls_are_decoded_bounded_and_sniffed() -> None:
    url = "data:application/octet-stream;base64," + base64.b64encode(PDF).decode()
    assert decode_data_url(url, what="document_url", max_bytes=1024) == Fetched(PDF, "application/pdf", url)
    text = "data:text/plain;charset=utf-8;base64," + base64.b64encode(b"hi").decode()
    assert decode_data_url(text, what="x", max_bytes=10).content_type == "text/plain"
    for bad, problem in [("data:application/pdf," + "x" * 10, "must be a base64 data URL"),
                         ("https://example.com/a.pdf", "must be a base64 data URL"),
                         ("data:application/pdf;base64,@@@@", "not valid base64"),
                         ("data:application/pdf;base64," + base64.b64encode(bytes(11)).decode(), "larger than 10")]:
        with pytest.raises(FetchRefused, match=problem):
            decode_data_url(bad, what="document_url", max_bytes=10)


# -- sniffing ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("head", "kind"), [
    (PDF, "application/pdf"), (PNG, "image/png"), (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
    (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"), (b"II*\x00\x08\x00", "image/tiff"),
    (b"MM\x00*\x00\x00", "image/tiff"), (b"GIF89a\x01\x00", "image/gif"), (b"GIF87a\x01\x00", "image/gif"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav"), (b"ID3\x04\x00\x00", "audio/mpeg"),
    (b"\xff\xfb\x90\x64", "audio/mpeg"), (b"\xff\xf1\x50\x80", "audio/aac"), (b"fLaC\x00\x00\x00\x22", "audio/flac"),
    (b"OggS\x00\x02", "audio/ogg"), (b"\x00\x00\x00\x20ftypM4A \x00", "audio/mp4"),
    (b"\x00\x00\x00\x18ftypmp42", "audio/mp4"), (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81", "audio/webm"),
    (b"<!DOCTYPE html><html>", None), (b"RIFF\x24\x00\x00\x00AVI ", None), (b"", None), (b"\xff", None),
    (b"PK\x03\x04", None), (b"\xff\xfea\x00b\x00", None), (b"\xff\xfb\xf0\x64", None), (b"\xff\xeb\x90", None),
    (b"\xff\xf3\x64\x00", "audio/mpeg"), (b"\xff\xfb", None),
])
def test_sniff_kind(head: bytes, kind: str | None) -> None:
    assert sniff_kind(head) == kind


# -- configuration -----------------------------------------------------------------------------------------------

def test_fetch_allow_entries_are_validated() -> None:
    parsed = AllowList.parse(["10.0.0.0/8", "::1", "Docs.Example:8443", "[::1]:8080"])
    assert [str(n) for n in parsed.networks] == ["10.0.0.0/8", "::1/128"]
    assert parsed.hosts == {("docs.example", 8443), ("::1", 8080)}
    assert parsed.permits_host("DOCS.example", 8443) and not parsed.permits_host("docs.example", 443)
    assert parsed.permits_address("10.9.8.7") and parsed.permits_address("::ffff:10.0.0.1")
    assert not parsed.permits_address("11.0.0.1")
    for bad in (["10.0.0.1/8"], ["docs.example"], ["user@docs.example:443"], ["docs.example:0x50"],
                ["http://docs.example:80"], ["docs.example:443/path"], ["10.0.0.0/8"] * 257):
        with pytest.raises(ValidationError):
            Settings(fetch_allow=bad)


def test_fetch_settings_and_their_deprecated_aliases(tmp_path: Path) -> None:
    default = FetchPolicy.from_settings(Settings())
    assert (default.timeout, default.max_redirects, default.allow) == (10.0, 3, AllowList())
    config = tmp_path / "c.toml"
    config.write_text('fetch_allow = ["192.168.0.0/16", "ocr.lan:8080"]\nimage_fetch_timeout = 4\n'
                      "image_max_redirects = 1\n", encoding="utf-8")
    policy = FetchPolicy.from_settings(load_settings(config, data_dir=tmp_path / "d"))
    assert (policy.timeout, policy.max_redirects) == (4.0, 1)
    assert policy.allow.permits_address("192.168.7.7") and policy.allow.permits_host("ocr.lan", 8080)
    assert Settings(image_fetch_timeout=4, fetch_timeout=20).fetch_timeout == 20  # the new name wins
    for bad in ({"fetch_timeout": 0}, {"fetch_timeout": 301}, {"fetch_max_redirects": 11}):
        with pytest.raises(ValidationError):
            Settings(**bad)  # type: ignore[arg-type]
