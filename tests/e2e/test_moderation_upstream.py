"""Moderation and classification models routed to upstreams on loopback: a second mistral-gateway (native kind,
the body forwarded unchanged but for the model) serves them; an ``openai``-kind upstream cannot (502, or the next
route target). No mock servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mistral_gateway.config import ModelEntry, Settings
from support import peer_upstreams, serving

pytestmark = pytest.mark.e2e

CAPS = ["moderation", "classification"]


@pytest.fixture
def front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    peer_settings = Settings(data_dir=tmp_path / "peer", bootstrap_dev_token=False, models=[
        ModelEntry(id="fake-moderation", engine="fake", capabilities=CAPS)])
    with serving(peer_settings, "front") as (peer_server, _peer, peer_token):
        monkeypatch.setenv("PEER_KEY", peer_token)
        upstreams, native, openai = peer_upstreams(peer_server.base_url, "fake-moderation")
        settings = Settings(
            data_dir=tmp_path / "front", bootstrap_dev_token=False,
            upstreams=upstreams,
            models=[ModelEntry(id="remote-moderation", capabilities=CAPS, routes=[native]),
                    ModelEntry(id="oa-moderation", capabilities=CAPS, routes=[openai]),
                    ModelEntry(id="then-native", capabilities=CAPS, routes=[openai, native])])
        with serving(settings, "user") as (front_server, _front, token):
            yield front_server.base_url, token


def post(front: tuple[str, str], path: str, body: dict[str, Any]) -> httpx.Response:
    url, token = front
    return httpx.post(url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_a_native_upstream_serves_the_four_operations(front: tuple[str, str]) -> None:
    r = post(front, "/v1/moderations", {"model": "remote-moderation", "input": ["violence and threats", "calm"]})
    assert r.status_code == 200, r.text
    assert [x["categories"]["violence_and_threats"] for x in r.json()["results"]] == [True, False]
    conversation = [{"role": "user", "content": "a question about law"}]
    for path, value in (("/v1/chat/moderations", conversation), ("/v1/classifications", "pii"),
                        ("/v1/chat/classifications", {"messages": conversation})):
        r = post(front, path, {"model": "remote-moderation", "input": value})
        assert r.status_code == 200 and len(r.json()["results"]) == 1, r.text


def test_an_openai_upstream_cannot_serve_them(front: tuple[str, str]) -> None:
    r = post(front, "/v1/moderations", {"model": "oa-moderation", "input": "x"})
    assert r.status_code == 502 and r.json()["code"] == "UPSTREAM_UNSUPPORTED" and "Moderations" in r.text
    r = post(front, "/v1/moderations", {"model": "then-native", "input": "selfharm"})  # the next target answers
    assert r.status_code == 200 and r.json()["results"][0]["categories"]["selfharm"] is True, r.text
