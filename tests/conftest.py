"""Shared fixtures: settings in a temporary data dir, real SQLite, the app, tokens and a live loopback server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.testclient import TestClient

from mistral_gateway.config import Settings
from mistral_gateway.http.app import create_app
from mistral_gateway.services.container import Services, build_services


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn on 127.0.0.1 in a background thread: a real HTTP server on loopback, stopped by the fixture."""

    def __init__(self, services: Services) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(services=services), host="127.0.0.1", port=self.port,
                                log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("live server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def live_server(services: Services) -> Iterator[LiveServer]:
    server = LiveServer(services)
    server.start()
    yield server
    server.stop()
