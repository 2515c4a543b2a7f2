"""A database that stops answering (PostgreSQL refusing connections, its sessions cut) is a 503 with Retry-After in
each dialect's shape, never a 500, and nothing of the statement is logged; the gateway answers again once the
database is back. The server is the real one in ``MISTRAL_GATEWAY_TEST_POSTGRES_URL``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url
from starlette.testclient import TestClient

from db_backends import PostgresServer, app_database_url
from dialect_support import error
from mistral_gateway.http.app import create_app
from mistral_gateway.services.container import Services, build_services
from support import fake_settings

pytestmark = pytest.mark.postgresql

PATHS = ["/v1/files", "/v1/agents", "/v1/batch/jobs", "/v1/conversations", "/v1/fine_tuning/jobs", "/v1/libraries"]


@pytest.fixture
def gateway(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, Services, str, str]]:
    with app_database_url("postgresql", request) as url:
        services = build_services(fake_settings(tmp_path / "data", database_url=url))
        try:
            token = services.tokens.create("t")[0]
            with TestClient(create_app(services=services)) as client:
                yield client, services, token, str(make_url(url).database)
        finally:
            services.close()


def call(client: TestClient, token: str, dialect: str, path: str) -> httpx.Response:
    if dialect == "native":
        return client.get(path, headers={"Authorization": f"Bearer {token}"})
    return client.get("/mistralai" + path, params={"api_token": token})


def test_an_unreachable_database_is_a_503_then_service_resumes(gateway: tuple[TestClient, Services, str, str],
                                                               postgres_server: PostgresServer,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    client, _, token, name = gateway
    assert call(client, token, "native", "/v1/files").status_code == 200  # the token is cached from here on
    postgres_server.allow_connections(name, False)
    try:
        with caplog.at_level(logging.WARNING, logger="mistral_gateway"):
            answers = {(dialect, path): call(client, token, dialect, path)
                       for dialect in ("native", "lowcode") for path in PATHS}
    finally:
        postgres_server.allow_connections(name, True)
    for (dialect, _), r in answers.items():
        body = error(r, dialect, 503)
        assert r.headers["Retry-After"] == "5" and body["code"] == "DATABASE_UNAVAILABLE"
    warnings = [r.getMessage() for r in caplog.records if r.name == "mistral_gateway.storage"]
    assert warnings and all("not currently accepting connections" in w for w in warnings)
    assert not any(token in r.getMessage() or "SELECT" in r.getMessage() for r in caplog.records)
    assert call(client, token, "native", "/v1/files").status_code == 200  # the pool reconnects by itself
