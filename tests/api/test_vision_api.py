"""Image parts over HTTP on a vision model (fake engine), with the default network policy: private image URLs,
oversized, mistyped and too many images are 400s in both dialects, naming the part."""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.http.app import create_app
from mistral_gateway.services.container import build_services
from vision_assets import png

IMAGE = png(4, 3)


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    yield from _serving(tmp_path)


def _serving(tmp_path: Path, **extra: Any) -> Iterator[tuple[TestClient, str]]:
    settings = Settings(data_dir=tmp_path / "data", bootstrap_dev_token=False, image_max_bytes=1024,
                        images_per_request=2, models=[
                            ModelEntry(id="fake-vision", engine="fake", capabilities=["completion_chat", "vision"]),
                            ModelEntry(id="fake-text", engine="fake", capabilities=["completion_chat"])], **extra)
    services = build_services(settings)
    token, _ = services.tokens.create("t")
    with TestClient(create_app(services=services)) as client:
        yield client, token
    services.close()


@pytest.fixture
def loopback_image() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(IMAGE)))
            self.end_headers()
            self.wfile.write(IMAGE)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/red.png", seen
    server.shutdown()
    server.server_close()


def chat(env: tuple[TestClient, str], *urls: Any, lowcode: bool = False,
         model: str = "fake-vision") -> tuple[int, dict[str, Any]]:
    client, token = env
    content = [{"type": "text", "text": "what is this?"}, *({"type": "image_url", "image_url": u} for u in urls)]
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 4}
    if lowcode:
        r = client.post("/mistralai/v1/chat/completions", params={"api_token": token}, json=body)
        return r.status_code, r.json()["data"].get("error", r.json()["data"])
    r = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {token}"}, json=body)
    return r.status_code, r.json()


def test_data_url_image_is_accepted(env: tuple[TestClient, str]) -> None:
    status, body = chat(env, data_url(IMAGE))
    assert status == 200 and body["choices"][0]["message"]["content"]


@pytest.mark.parametrize("lowcode", [False, True])
def test_loopback_image_url_is_refused_by_default(env: tuple[TestClient, str],
                                                  loopback_image: tuple[str, list[str]], lowcode: bool) -> None:
    url, seen = loopback_image
    status, error = chat(env, url, lowcode=lowcode)
    assert status == 400 and error["code"] == "INVALID_IMAGE"
    assert "messages[0].content[1]" in error["message"] and "refused" in error["message"]
    assert seen == []


@pytest.mark.parametrize("entry", ["127.0.0.0/8", "127.0.0.1:PORT"])
def test_fetch_allow_lets_a_loopback_image_url_through(tmp_path: Path, loopback_image: tuple[str, list[str]],
                                                       entry: str) -> None:
    url, seen = loopback_image
    for allowed in _serving(tmp_path, fetch_allow=[entry.replace("PORT", str(urlsplit(url).port))]):
        status, body = chat(allowed, url)
        assert status == 200 and body["choices"][0]["message"]["content"]
    assert seen == ["/red.png"]


@pytest.mark.parametrize(("urls", "problem"), [
    ((data_url(IMAGE + bytes(2000)),), "larger than 1024 bytes"),
    ((data_url(b"GIF8 not really"),), "not a png, jpeg, webp or gif"),
    ((data_url(IMAGE),) * 3, "more than 2 images"),
])
def test_bad_images_are_400s(env: tuple[TestClient, str], urls: tuple[str, ...], problem: str) -> None:
    for lowcode in (False, True):
        status, error = chat(env, *urls, lowcode=lowcode)
        assert status == 400 and problem in error["message"], error


@pytest.mark.parametrize("image_url", ["https://example.com/cat.png", data_url(IMAGE),
                                       {"url": "https://example.com/cat.png", "detail": "high"},
                                       {"url": data_url(IMAGE)}])
def test_text_only_model_keeps_refusing_images(env: tuple[TestClient, str], image_url: Any) -> None:
    for lowcode in (False, True):
        status, error = chat(env, image_url, lowcode=lowcode, model="fake-text")
        assert status == 400 and error["code"] == "UNSUPPORTED_MODEL_CAPABILITY" and "vision" in error["message"]
