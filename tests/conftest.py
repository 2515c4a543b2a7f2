"""Shared fixtures: settings in a temporary data dir, real SQLite, the app, tokens and a live loopback server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from mistral_gateway.config import Settings
from mistral_gateway.http.app import create_app
from mistral_gateway.services.container import Services, build_services
from support import LiveServer


class FakeClock:
    """A clock the test moves by hand; services take any ``() -> float`` callable."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    """Where real-model tests assemble bundled weights: ``<repo>/.mistral-gateway/weights`` (gitignored), the same
    directory ``make serve`` uses, so each multi-part model is assembled at most once across runs."""
    path = REPO_ROOT / ".mistral-gateway" / "weights"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", bootstrap_dev_token=False)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    svc = build_services(settings)
    yield svc
    svc.close()


@pytest.fixture
def make_token(services: Services) -> Callable[..., str]:
    def make(name: str = "test", workspace: str = "default", scopes: list[str] | None = None,
             expires_in: int | None = None) -> str:
        token, _ = services.tokens.create(name, workspace=workspace, scopes=scopes or ["*"], expires_in=expires_in)
        return token

    return make


@pytest.fixture
def token(make_token: Callable[..., str]) -> str:
    return make_token()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services=services), base_url="http://testserver") as c:
        yield c


@pytest.fixture
def live_server(services: Services) -> Iterator[LiveServer]:
    server = LiveServer(services)
    server.start()
    yield server
    server.stop()
