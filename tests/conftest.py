"""Shared fixtures: settings in a temporary data dir, real SQLite, the app, tokens and a live loopback server, and
``database_url``: an empty database on SQLite and on PostgreSQL (when ``MISTRAL_GATEWAY_TEST_POSTGRES_URL`` is set)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from db_backends import BACKENDS, POSTGRES_ENV, POSTGRES_SKIPPED, PostgresServer, app_database_url, migrated_sqlite_file
from mistral_gateway.config import Settings
from mistral_gateway.http.app import create_app
from mistral_gateway.services.container import Services, build_services
from support import LiveServer

_postgres_url = pytest.StashKey[str | None]()


def pytest_configure(config: pytest.Config) -> None:
    # Read once, before tests/unit's autouse fixture clears every MISTRAL_GATEWAY_* variable for each test.
    config.stash[_postgres_url] = os.environ.get(POSTGRES_ENV) or None
    config.addinivalue_line("markers", "postgresql: runs against the PostgreSQL server in " + POSTGRES_ENV)


def pytest_report_header(config: pytest.Config) -> str:
    url = config.stash[_postgres_url]
    return f"postgresql: {PostgresServer.describe(url)}" if url else POSTGRES_SKIPPED


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.stash[_postgres_url]:
        return
    for item in items:
        if item.get_closest_marker("postgresql"):
            item.add_marker(pytest.mark.skip(reason=POSTGRES_SKIPPED))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Those skips fold into one line of the -ra summary instead of one per test function."""
    report: pytest.TestReport = yield
    if report.skipped and isinstance(report.longrepr, tuple) and POSTGRES_SKIPPED in report.longrepr[2]:
        report.longrepr = (__file__, 0, POSTGRES_SKIPPED)
    return report


@pytest.fixture(scope="session")
def postgres_server(pytestconfig: pytest.Config) -> Iterator[PostgresServer]:
    url = pytestconfig.stash[_postgres_url]
    if not url:
        pytest.skip(POSTGRES_SKIPPED)
    server = PostgresServer(url)
    yield server
    server.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session; ``db`` fixtures start from a copy."""
    return migrated_sqlite_file(tmp_path_factory.mktemp("template") / "migrated.db")


@pytest.fixture(params=BACKENDS)
def database_backend(request: pytest.FixtureRequest) -> str:
    """Tests that use a database run once per backend: ``sqlite``, then ``postgresql``."""
    return str(request.param)


@pytest.fixture
def database_url(database_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database (no tables), usable from several threads and processes: a SQLite file
    in ``tmp_path``, or a database of its own on the PostgreSQL server (dropped after the test)."""
    if database_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with server.database() as url:
        yield url


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


@pytest.fixture(scope="module", params=BACKENDS)
def module_backend(request: pytest.FixtureRequest) -> str:
    """``database_backend`` for a module-scoped app: build it on ``app_database_url(module_backend, request)``."""
    return str(request.param)


@pytest.fixture
def app_database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The ``database_url`` of the app the ``settings`` fixture builds: SQLite in its data dir, unless the test uses
    ``database_backend`` (a module opts in with ``pytestmark = pytest.mark.usefixtures("database_backend")``): then
    SQLite and PostgreSQL in turn."""
    backend = request.getfixturevalue("database_backend") if "database_backend" in request.fixturenames else "sqlite"
    with app_database_url(backend, request) as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, app_database: str | None) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=app_database, bootstrap_dev_token=False)


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
