"""Image parts: decoding and checking data URLs, fetching image URLs from a real loopback HTTP server with the
private-address checks (default: refused), redirects checked hop by hop, DNS pinned, limits on bytes, pixels,
count and time."""

from __future__ import annotations

import asyncio
import base64
import datetime
import http.server
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from mistral_gateway.config import Settings
from mistral_gateway.engines.base import ChatMessage
from mistral_gateway.errors import BadRequest
from mistral_gateway.protocol.chat import ChatCompletionRequest
from mistral_gateway.security.allowlist import AllowList
from mistral_gateway.security.fetch import FetchPolicy, SafeFetcher
from mistral_gateway.security.netcheck import resolve_url
from mistral_gateway.services.images import ImageLimits, ImageLoader, sniff
from vision_assets import gif, jpeg_header, png, webp_header

IMAGE = png(4, 3)
BIG = IMAGE + bytes(5000)  # a valid header; the bytes are over the 4096 limit of these tests


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def loader(*, per_request: int = 3, timeout: float = 5.0, allow: tuple[str, ...] = (), **fetcher: Any) -> ImageLoader:
    """4096 bytes and 3 images at most; fetches with 2 redirects, the allow-list ``allow`` (loopback is private, so
    the test server is refused without it) and, in ``fetcher``, a resolver or transport."""
    policy = FetchPolicy(timeout, 2, AllowList.parse(allow))
    return ImageLoader(ImageLimits(4096, 1000 * 1000, per_request), SafeFetcher(policy, **fetcher))


LOOPBACK = ("127.0.0.0/8",)


def request(*messages: dict[str, Any]) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": list(messages)})


def user(*parts: Any) -> dict[str, Any]:
    return {"role": "user", "content": [p if isinstance(p, dict) else
                                        ({"type": "text", "text": p} if not p.startswith(("data:", "http"))
                                         else {"type": "image_url", "image_url": p}) for p in parts]}


def attach(images: ImageLoader, req: ChatCompletionRequest) -> list[ChatMessage]:
    texts = [ChatMessage(m.role, "") for m in req.messages]  # the loader only adds images
    return asyncio.run(images.attach(req.messages, texts))


def refused(images: ImageLoader, url: Any) -> str:
    with pytest.raises(BadRequest) as info:
        attach(images, request(user("look", url)))
    assert info.value.code == "INVALID_IMAGE" and info.value.param == "messages"
    assert info.value.message.startswith("messages[0].content[1]: ")
    return info.value.message


# -- formats and data URLs -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "expected"), [
    (png(7, 5), ("image/png", 7, 5)), (gif(9, 4), ("image/gif", 9, 4)),
    (jpeg_header(640, 480), ("image/jpeg", 640, 480)), (webp_header(300, 200), ("image/webp", 300, 200))])
def test_sniff_reads_type_and_size(data: bytes, expected: tuple[str, int, int]) -> None:
    assert sniff(data) == expected


def test_images_are_attached_at_their_place_in_the_text() -> None:
    req = request({"role": "system", "content": "be brief"},
                  user("abc", data_url(IMAGE), "de", {"type": "image_url", "image_url": {"url": data_url(IMAGE),
                                                                                         "detail": "high"}}))
    messages = attach(loader(), req)
    assert messages[0].images == ()
    assert [(i.offset, i.mime, i.data) for i in messages[1].images] == [(3, "image/png", IMAGE),
                                                                         (5, "image/png", IMAGE)]


@pytest.mark.parametrize(("url", "problem"), [
    (data_url(b"hello, not an image", "image/png"), "not a png, jpeg, webp or gif"),
    (data_url(b"%PDF-1.7 ...", "application/pdf"), "not a png, jpeg, webp or gif"),
    ("data:image/png," + "x" * 10, "must be a base64 data URL"),
    ("data:image/png;base64,@@@@", "not valid base64"),
    (data_url(BIG), "larger than 4096 bytes"),
    (data_url(png(2000, 1000, (0, 0, 0))[:200]), "2000x1000 pixels"),  # the header alone is enough to refuse
    (data_url(png(3, 0)), "no pixels"),
    ({"type": "image_url", "image_url": "ftp://example.com/a.png"}, "http(s) URL or a base64 data URL"),
])
def test_bad_data_urls_are_400s_naming_the_part(url: Any, problem: str) -> None:
    assert problem in refused(loader(), url)


@pytest.mark.parametrize(("image_url", "problem"), [
    ({"url": data_url(IMAGE), "detail": "ultra"}, "detail"), ({"url": data_url(IMAGE), "x": 1}, "unknown fields"),
    ({"detail": "low"}, "'url' string"), ("", "'url' string")])
def test_malformed_image_url_objects(image_url: Any, problem: str) -> None:
    assert problem in refused(loader(), {"type": "image_url", "image_url": image_url})


def test_too_many_images_and_images_outside_user_messages() -> None:
    two = loader(per_request=2)
    with pytest.raises(BadRequest, match=r"messages\[1\]\.content\[0\]: more than 2 images"):
        attach(two, request(user(data_url(IMAGE), data_url(IMAGE)), user(data_url(IMAGE))))
    with pytest.raises(BadRequest, match="user messages only"):
        attach(two, request({"role": "system", "content": [{"type": "image_url", "image_url": data_url(IMAGE)}]}))


# -- fetched URLs: a real HTTP server on loopback --------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str]]
    port: int

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Host", "")))
        routes = {
            "/red.png": (200, "image/png", IMAGE),
            "/page": (200, "text/html", b"<html></html>"),
            "/fake.png": (200, "image/png", b"<html>not really</html>"),
            "/big.png": (200, "image/png", BIG),
            "/missing": (404, "text/plain", b"no"),
        }
        if self.path.startswith("/to/"):  # /to/<url>: redirect there
            self.send_response(302)
            self.send_header("Location", self.path[4:].replace("PORT", str(self.port)))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/slow.png":
            time.sleep(1.5)
        if self.path == "/chunked.png":  # no Content-Length: the limit applies while reading
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(BIG)
            return
        status, kind, body = routes.get(self.path, (200, "image/png", IMAGE))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[tuple[str, str]], int]]:
    seen: list[tuple[str, str]] = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Handler,), {"seen": seen}))
    port = httpd.server_address[1]
    httpd.RequestHandlerClass.port = port  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", seen, port
    httpd.shutdown()
    httpd.server_close()


def test_fetches_when_private_networks_are_allowed(server: tuple[str, list[tuple[str, str]], int]) -> None:
    base, seen, _ = server
    allowed = loader(allow=LOOPBACK)
    messages = attach(allowed, request(user("x", f"{base}/red.png", f"{base}/to/{base}/red.png")))
    assert [i.data for i in messages[0].images] == [IMAGE, IMAGE]
    assert sorted(p for p, _ in seen) == ["/red.png", "/red.png", f"/to/{base}/red.png"]


@pytest.mark.parametrize(("path", "problem"), [
    ("/page", "served 'text/html'"), ("/fake.png", "not a png"), ("/big.png", "at most 4096 are accepted"),
    ("/chunked.png", "larger than 4096 bytes"), ("/missing", "HTTP 404"),
    ("/to/http://127.0.0.1:PORT/to/http://127.0.0.1:PORT/to/http://127.0.0.1:PORT/red.png", "redirected more than 2"),
    ("/slow.png", "longer than 0.5 s")])
def test_fetch_failures_are_400s(server: tuple[str, list[tuple[str, str]], int], path: str, problem: str) -> None:
    base, _, _ = server
    assert problem in refused(loader(allow=LOOPBACK, timeout=0.5), f"{base}{path}")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]", "2130706433", "0x7f.1",
                                  "0177.0.0.1", "127.1", "10.0.0.1", "192.168.0.1", "169.254.169.254", "[fe80::1]",
                                  "[64:ff9b::7f00:1]", "100.64.0.1", "0.0.0.0"])  # noqa: S104
def test_private_hosts_are_refused_by_default(server: tuple[str, list[tuple[str, str]], int], host: str) -> None:
    _, seen, port = server
    assert "refused" in refused(loader(), f"http://{host}:{port}/red.png")
    assert seen == []  # never connected


def _pinning_resolver(calls: list[str]) -> Any:
    """``images.test`` stands for a name (in no DNS) whose address is the test server's; the tests allow it by
    host:port. Every other host is resolved for real (and its addresses checked by the fetcher)."""
    def resolve(url: str, *, allow_private: bool) -> list[str]:
        calls.append(url)
        if "//images.test" in url:
            return ["127.0.0.1"]
        return resolve_url(url, allow_private=allow_private)
    return resolve


def test_connection_goes_to_the_checked_address(server: tuple[str, list[tuple[str, str]], int]) -> None:
    _, seen, port = server
    calls: list[str] = []
    messages = attach(loader(allow=(f"images.test:{port}",), resolver=_pinning_resolver(calls)),
                      request(user("x", f"http://images.test:{port}/red.png")))
    assert messages[0].images[0].data == IMAGE
    # resolved once, by us; the name is not in any DNS, so the connection used the checked address
    assert calls == [f"http://images.test:{port}/red.png"]
    assert seen == [("/red.png", f"images.test:{port}")]


@pytest.mark.parametrize("target", ["http://127.0.0.1:PORT/red.png", "http://2130706433:PORT/red.png",
                                    "http://[::ffff:127.0.0.1]:PORT/red.png", "http://localhost:PORT/red.png",
                                    "http://169.254.169.254/latest/meta-data"])
def test_redirects_to_private_hosts_are_refused(server: tuple[str, list[tuple[str, str]], int], target: str) -> None:
    _, seen, port = server
    only_the_name = loader(allow=(f"images.test:{port}",), resolver=_pinning_resolver([]))
    assert "refused" in refused(only_the_name, f"http://images.test:{port}/to/{target}")
    assert [p for p, _ in seen] == [f"/to/{target}"]  # the first hop only: the redirect's target was not fetched


# -- https: the connection is pinned to the checked address, the certificate still verified against the name ----

def _certificate(tmp: Path) -> tuple[Path, Path, ssl.SSLContext]:
    """A throwaway CA and a certificate for ``images.test`` signed by it; the client context trusts only the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test ca")).issuer_name(name("test ca"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name("images.test")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("images.test")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return cert_file, key_file, client


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, list[tuple[str, str]], ssl.SSLContext]]:
    cert_file, key_file, client = _certificate(tmp_path)
    seen: list[tuple[str, str]] = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Handler,), {"seen": seen}))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd.server_address[1], seen, client
    httpd.shutdown()
    httpd.server_close()


def _public(names: dict[str, str]) -> Any:
    def resolve(url: str, *, allow_private: bool) -> list[str]:
        host = urlsplit(url).hostname or ""
        return [names[host]] if host in names else resolve_url(url, allow_private=allow_private)
    return resolve


def test_https_is_pinned_and_verified_against_the_name(
        tls_server: tuple[int, list[tuple[str, str]], ssl.SSLContext]) -> None:
    port, seen, client = tls_server
    # both names stand for hosts (allowed by host:port) at the test server; only images.test is on its certificate
    tls = loader(allow=(f"images.test:{port}", f"other.test:{port}"),
                 resolver=_public({"images.test": "127.0.0.1", "other.test": "127.0.0.1"}),
                 transport=httpx.AsyncHTTPTransport(verify=client))
    messages = attach(tls, request(user("x", f"https://images.test:{port}/red.png")))
    assert messages[0].images[0].data == IMAGE and seen == [("/red.png", f"images.test:{port}")]
    assert "could not be fetched" in refused(tls, f"https://other.test:{port}/red.png")  # certificate mismatch
    assert len(seen) == 1


# -- settings: the container's fetcher, the allow-list, the deprecated allow_private_image_urls ---------------------

@pytest.mark.parametrize(("settings", "fetched"), [
    ({}, False), ({"fetch_allow": ["127.0.0.0/8"]}, True), ({"allow_private_image_urls": True}, True),
    ({"fetch_allow": ["10.0.0.0/8"]}, False)])
def test_image_urls_follow_the_fetch_settings(server: tuple[str, list[tuple[str, str]], int],
                                              settings: dict[str, Any], fetched: bool) -> None:
    base, seen, _ = server
    configured = Settings(**settings)
    images = ImageLoader.from_settings(configured, SafeFetcher(FetchPolicy.from_settings(configured)))
    if fetched:
        assert attach(images, request(user("x", f"{base}/red.png")))[0].images[0].data == IMAGE
    else:
        assert "is refused" in refused(images, f"{base}/red.png")
    assert len(seen) == fetched


def test_the_deprecated_setting_widens_image_urls_only() -> None:
    shared = SafeFetcher(FetchPolicy.from_settings(Settings()))
    assert ImageLoader.from_settings(Settings(), shared).fetcher is shared
    widened = ImageLoader.from_settings(Settings(allow_private_image_urls=True), shared).fetcher
    assert widened is not shared and widened.policy.allow.permits_address("10.0.0.1")
    assert not shared.policy.allow.permits_address("10.0.0.1")
