"""OCR models routed to upstreams on loopback: a second mistral-gateway (native kind, the body forwarded unchanged
but for the model) serves them on its fake OCR engine; an ``openai``-kind upstream cannot (502, or the next route
target). No mock servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mistral_gateway.config import ModelEntry, Settings
from ocr_support import data_url
from support import peer_upstreams, serving

pytestmark = pytest.mark.e2e


@pytest.fixture
def front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    peer_settings = Settings(data_dir=tmp_path / "peer", bootstrap_dev_token=False, models=[
        ModelEntry(id="fake-ocr", engine="fake", capabilities=["ocr"])])
    with serving(peer_settings, "front") as (peer_server, _peer, peer_token):
        monkeypatch.setenv("PEER_KEY", peer_token)
        upstreams, native, openai = peer_upstreams(peer_server.base_url, "fake-ocr")
        settings = Settings(
            data_dir=tmp_path / "front", bootstrap_dev_token=False,
            upstreams=upstreams,
            models=[ModelEntry(id="remote-ocr", aliases=["mistral-ocr-latest"], capabilities=["ocr"],
                               routes=[native]),
                    ModelEntry(id="oa-ocr", capabilities=["ocr"], routes=[openai]),
                    ModelEntry(id="then-native", capabilities=["ocr"], routes=[openai, native])])
        with serving(settings, "user") as (front_server, _front, token):
            yield front_server.base_url, token


def post(front: tuple[str, str], body: dict[str, Any]) -> httpx.Response:
    url, token = front
    return httpx.post(url + "/v1/ocr", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_a_native_upstream_serves_ocr(front: tuple[str, str]) -> None:
    for model in ("remote-ocr", None):  # null: mistral-ocr-latest, routed as well
        r = post(front, {"model": model, "document": {"document_url": data_url("one\ftwo")}, "pages": "1"})
        assert r.status_code == 200, r.text
        assert [(p["index"], p["markdown"]) for p in r.json()["pages"]] == [(1, "two")]


def test_an_openai_upstream_cannot_serve_it(front: tuple[str, str]) -> None:
    body = {"document": {"document_url": data_url("page")}}
    r = post(front, {"model": "oa-ocr", **body})
    assert r.status_code == 502 and r.json()["code"] == "UPSTREAM_UNSUPPORTED" and "OCR" in r.text
    r = post(front, {"model": "then-native", **body})  # the next target answers
    assert r.status_code == 200 and r.json()["pages"][0]["markdown"] == "page", r.text
