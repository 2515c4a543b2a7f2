"""GET /metrics over HTTP: requests in both dialects move the counters by exactly what was sent, tokens are counted
by model, the scrape is refused without the metrics token when one is set, and no token ever appears in it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.http.app import create_app
from mistral_gateway.services.container import Services, build_services

MODELS = [ModelEntry(id="fake-chat", aliases=["mistral-small-latest"], engine="fake", max_context_length=64,
                     capabilities=["completion_chat"])]
CHAT = {"model": "fake-chat", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 5}
METRICS_TOKEN = "scrape-secret-0123456789abcdef"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: TestClient, **headers: str) -> Samples:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def requests(samples: Samples, operation: str, dialect: str, status: int) -> float:
    key = (("dialect", dialect), ("operation", operation), ("status", str(status)))
    return samples.get(("mistral_gateway_requests_total", key), 0.0)


def tokens(samples: Samples, operation: str, model: str, kind: str) -> float:
    return samples.get(("mistral_gateway_tokens_total", (("kind", kind), ("model", model),
                                                         ("operation", operation))), 0.0)


def make(tmp_path: Path, **overrides: object) -> tuple[Services, str]:
    services = build_services(Settings(data_dir=tmp_path / "data", bootstrap_dev_token=False, models=MODELS,
                                       **overrides))  # type: ignore[arg-type]
    token, _ = services.tokens.create("t")
    return services, token


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[TestClient, Services, str]]:
    services, token = make(tmp_path)
    with TestClient(create_app(services=services)) as client:
        yield client, services, token
    services.close()


def test_requests_in_both_dialects_move_the_counters(env: tuple[TestClient, Services, str]) -> None:
    client, services, token = env
    models = services.registry.by_path("GET", "/v1/models")
    chat = services.registry.by_path("POST", "/v1/chat/completions")
    assert models is not None and chat is not None
    bearer = {"Authorization": f"Bearer {token}"}
    client.get("/v1/models", headers=bearer)  # series exist from here on: the deltas below are exact
    before = scrape(client)

    for _ in range(3):
        assert client.get("/v1/models", headers=bearer).status_code == 200
    for _ in range(2):
        assert client.get("/mistralai/v1/models", params={"api_token": token}).status_code == 200
    assert client.get("/v1/models", headers={"Authorization": "Bearer at_wrong"}).status_code == 401
    answers = [client.post("/v1/chat/completions", headers=bearer, json=CHAT).json()["usage"],
               client.post("/mistralai/v1/chat/completions", params={"api_token": token}, json=CHAT)
               .json()["data"]["usage"]]
    after = scrape(client)

    assert requests(after, models.id, "native", 200) - requests(before, models.id, "native", 200) == 3
    assert requests(after, models.id, "lowcode", 200) - requests(before, models.id, "lowcode", 200) == 2
    assert requests(after, models.id, "native", 401) - requests(before, models.id, "native", 401) == 1
    assert client.get("/v1/no-such-thing", headers=bearer).status_code == 404
    assert requests(scrape(client), "unmatched", "native", 404) - requests(before, "unmatched", "native", 404) == 1
    assert requests(after, chat.id, "native", 200) == requests(after, chat.id, "lowcode", 200) == 1
    latency = ("mistral_gateway_request_duration_seconds_count", (("operation", models.id),))
    assert after[latency] - before[latency] == 6  # the refused one too
    for kind in ("prompt", "completion"):
        sent = sum(usage[f"{kind}_tokens"] for usage in answers)
        assert sent > 0 and tokens(after, chat.id, "fake-chat", kind) == sent


def test_no_token_appears_in_a_scrape(env: tuple[TestClient, Services, str]) -> None:
    client, _, token = env
    client.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
    client.get("/mistralai/v1/models", params={"api_token": token})
    client.get(f"/v1/models/{token}", headers={"Authorization": f"Bearer {token}"})  # a token pasted into a path
    client.get(f"/mistralai/v1/{token}", params={"api_token": token})
    text = client.get("/metrics").text
    assert token not in text and token[:12] not in text


def test_the_metrics_token_guards_the_scrape(tmp_path: Path) -> None:
    services, _ = make(tmp_path, metrics_token=METRICS_TOKEN)
    try:
        with TestClient(create_app(services=services)) as client:
            r = client.get("/metrics")
            assert r.status_code == 401 and METRICS_TOKEN not in r.text
            assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
            text = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
            assert METRICS_TOKEN not in text
    finally:
        services.close()


def test_metrics_can_be_switched_off(tmp_path: Path) -> None:
    services, _ = make(tmp_path, metrics_enabled=False)
    try:
        with TestClient(create_app(services=services)) as client:
            assert client.get("/metrics").status_code == 404
    finally:
        services.close()


def test_the_settings_never_show_the_metrics_token() -> None:
    assert METRICS_TOKEN not in repr(Settings(metrics_token=METRICS_TOKEN))
