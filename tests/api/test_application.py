"""The application layer is the one path: a batch line (``Application.execute_for_batch``, as a job calls it) is
billed, routed and limited exactly like the same request over HTTP — same usage record fields, same token budget
spent, same rate limits — for local models and for models routed to an upstream (a real gateway on loopback)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from db_backends import app_database_url
from mistral_gateway.app import Application, BinaryResult, RawJSON
from mistral_gateway.config import LimitPolicy, ModelEntry, Settings
from mistral_gateway.errors import NotFound
from mistral_gateway.http.app import create_app
from mistral_gateway.protocol.batch import ListBatchJobsQuery
from mistral_gateway.protocol.files import RetrieveFileOut, SignedUrlQuery
from mistral_gateway.protocol.models import ListModelsQuery
from mistral_gateway.services.container import Services, build_services
from mistral_gateway.services.limits import LimitService
from mistral_gateway.storage.limits import DatabaseLimiter
from mistral_gateway.storage.records import UsageRecord
from mistral_gateway.storage.tables import RateWindow
from support import LiveServer

NOW = 1_700_000_000.0
FIM = "<|fim_prefix|>{prompt}<|fim_suffix|>{suffix}<|fim_middle|>"
LOCAL = [
    ModelEntry(id="fake-chat", engine="fake", max_context_length=256,
               capabilities=["completion_chat", "completion_fim"], fim_template=FIM),
    ModelEntry(id="fake-embed", engine="fake", capabilities=[]),
]
LINES = [
    ("/v1/chat/completions", {"model": "fake-chat", "messages": [{"role": "user", "content": "Hello there"}],
                              "max_tokens": 5, "random_seed": 3}),
    ("/v1/fim/completions", {"model": "fake-chat", "prompt": "def f(", "suffix": "):", "max_tokens": 4}),
    ("/v1/embeddings", {"model": "fake-embed", "input": ["one text", "two texts"]}),
]
# Fields that differ between any two requests (when and how long), not how they were billed or routed.
TIMING = ("created_at", "latency_ms", "id")


@dataclasses.dataclass
class Gateway:
    client: TestClient
    services: Services
    app: Application

    def post(self, token: str, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.client.post(path, headers={"Authorization": f"Bearer {token}"}, json=body)

    def line(self, token: str, endpoint: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One batch line, on the server's own event loop (as the embedded job worker runs it)."""
        principal = self.services.tokens.verify(token)
        return self.client.portal.call(self.app.execute_for_batch, principal, endpoint, body)

    def records(self) -> list[UsageRecord]:
        return list(reversed(self.services.usage.list(limit=1000)[0]))

    def tokens_counted(self) -> int:
        with self.services.db.session() as s:
            return int(s.scalar(select(func.coalesce(func.sum(RateWindow.tokens), 0))) or 0)


@pytest.fixture
def make_gateway(tmp_path: Path, clock: Any, database_backend: str,
                 request: pytest.FixtureRequest) -> Iterator[Callable[..., Gateway]]:
    """Gateways with the database limiter, on SQLite and PostgreSQL (each its own database, dropped after)."""
    opened: list[tuple[TestClient, Services]] = []
    databases = ExitStack()
    clock.now = NOW

    def make(**settings: Any) -> Gateway:
        url = databases.enter_context(app_database_url(database_backend, request))
        services = build_services(Settings(data_dir=tmp_path / f"gw{len(opened)}", database_url=url,
                                           bootstrap_dev_token=False, **settings))
        services.limits.close()
        services.limits = LimitService(DatabaseLimiter(services.db), workspaces=services.settings.workspaces,
                                       default=services.settings.default_token_limits, clock=clock)
        client = TestClient(create_app(services=services))
        client.__enter__()
        opened.append((client, services))
        return Gateway(client, services, client.app.state.application)

    yield make
    for client, services in opened:
        client.__exit__(None, None, None)
        services.close()
    databases.close()


def _billing(record: UsageRecord) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(record).items() if k not in TIMING}


def _same_billing(gw: Gateway, token: str, endpoint: str, body: dict[str, Any]) -> tuple[dict, dict]:
    before = len(gw.records())
    r = gw.post(token, endpoint, body)
    status, line_body = gw.line(token, endpoint, body)
    assert (status, line_body.get("object")) == (r.status_code, r.json().get("object")), (r.text, line_body)
    over_http, as_line = gw.records()[before:]
    assert _billing(over_http) == _billing(as_line)
    return _billing(over_http), line_body


@pytest.mark.parametrize(("endpoint", "body"), LINES, ids=["chat", "fim", "embeddings"])
def test_a_batch_line_is_billed_like_the_same_request_over_http(make_gateway: Callable[..., Gateway],
                                                                 endpoint: str, body: dict[str, Any]) -> None:
    gw = make_gateway(models=LOCAL, default_token_limits=LimitPolicy(tokens_per_minute=100_000))
    token, _ = gw.services.tokens.create("t", scopes=["*"])
    billing, line_body = _same_billing(gw, token, endpoint, body)
    op = gw.services.registry.by_path("POST", endpoint)
    assert billing["operation"] == op.id and billing["status"] == 200 and billing["backend"] == "local"
    assert billing["model"] == body["model"] and billing["dialect"] == "native"
    assert billing["prompt_tokens"] > 0 and billing["token_id"] == gw.services.tokens.verify(token).token_id
    assert line_body["usage"]["prompt_tokens"] == billing["prompt_tokens"]
    spent = billing["prompt_tokens"] + billing["completion_tokens"]
    assert gw.tokens_counted() == 2 * spent  # both settled against the tokens-per-minute budget


def test_batch_lines_count_against_the_same_rate_limits(make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(models=LOCAL)
    token, _ = gw.services.tokens.create("t", scopes=["*"], requests_per_minute=2)
    endpoint, body = LINES[0]
    assert gw.post(token, endpoint, body).status_code == 200
    assert gw.line(token, endpoint, body)[0] == 200
    status, refused = gw.line(token, endpoint, body)  # the third request this minute, over HTTP or not
    assert status == 429 and refused["code"] == "RATE_LIMIT_EXCEEDED" and refused["object"] == "error"
    assert gw.post(token, endpoint, body).status_code == 429
    assert [r.status for r in gw.records()] == [200, 200, 429, 429]


def test_batch_line_errors_in_the_native_shape_and_recorded_alike(make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(models=LOCAL)
    token, _ = gw.services.tokens.create("t", scopes=["*"])
    bad = {"model": "fake-chat", "messages": [], "max_tokens": -1}
    billing, line_body = _same_billing(gw, token, "/v1/chat/completions", bad)
    assert billing["status"] == 422 and line_body["detail"][0]["loc"][0] == "body"
    billing, line_body = _same_billing(gw, token, "/v1/chat/completions",
                                       {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]})
    assert billing["status"] == 404 and line_body["object"] == "error" and line_body["code"]
    status, body = gw.line(token, "/v1/models", {})
    assert status == 400 and body["code"] == "UNSUPPORTED_ENDPOINT" and body["param"] == "endpoint"
    status, body = gw.line(token, "/v1/chat/completions", {**LINES[0][1], "stream": True})
    assert status == 200 and body["object"] == "chat.completion"  # a line always answers whole
    limited, _ = gw.services.tokens.create("files-only", scopes=["files"])
    status, body = gw.line(limited, *LINES[0])
    assert status == 403 and body["code"] == "MISSING_SCOPE"


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[tuple[LiveServer, str]]:
    services = build_services(Settings(data_dir=tmp_path / "peer", bootstrap_dev_token=False, models=LOCAL))
    token, _ = services.tokens.create("front", scopes=["*"])
    server = LiveServer(services)
    server.start()
    yield server, token
    server.stop()
    services.close()


@pytest.mark.parametrize(("endpoint", "body"), LINES, ids=["chat", "fim", "embeddings"])
def test_a_routed_batch_line_goes_to_the_upstream_like_http(make_gateway: Callable[..., Gateway],
                                                            peer: tuple[LiveServer, str], endpoint: str,
                                                            body: dict[str, Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    server, peer_token = peer
    monkeypatch.setenv("PEER_KEY", peer_token)
    common = {"api_key_env": "PEER_KEY", "allow_private_network": True, "connect_timeout": 2}
    gw = make_gateway(
        upstreams=[{"name": "peer", "kind": "mistral-gateway", "base_url": server.base_url, **common},
                   {"name": "down", "kind": "mistral-gateway", "base_url": "http://127.0.0.1:9", **common}],
        models=[ModelEntry(id="remote", capabilities=["completion_chat", "completion_fim"],
                           routes=[{"upstream": "down", "model": body["model"]},
                                   {"upstream": "peer", "model": body["model"]}])])
    token, _ = gw.services.tokens.create("t", scopes=["*"])
    billing, line_body = _same_billing(gw, token, endpoint, {**body, "model": "remote"})
    assert billing["backend"] == "peer" and billing["model"] == "remote" and billing["status"] == 200
    assert billing["prompt_tokens"] == line_body["usage"]["prompt_tokens"] > 0


def test_resource_operations_run_through_the_application_without_http(make_gateway: Callable[..., Gateway]) -> None:
    """Files, models and batch jobs are application-layer operations too: called by op id with path and query,
    they answer what the HTTP endpoint renders, and are recorded the same way."""
    gw = make_gateway(models=LOCAL, public_base_url="https://gw.example")
    token, _ = gw.services.tokens.create("t", scopes=["*"])
    principal = gw.services.tokens.verify(token)
    auth = {"Authorization": f"Bearer {token}"}

    def call(op_id: str, request: Any = None, **kw: Any) -> Any:
        return gw.client.portal.call(functools.partial(gw.app.call, principal, op_id, request, **kw))

    uploaded = gw.client.post("/v1/files", headers=auth, files={"file": ("a.jsonl", b'{"x": 1}\n')},
                              data={"purpose": "batch"}).json()
    before = len(gw.records())
    by_app = call("retrieve_file", path={"file_id": uploaded["id"]})
    over_http = gw.client.get(f"/v1/files/{uploaded['id']}", headers=auth)
    assert isinstance(by_app, RetrieveFileOut) and orjson.loads(by_app.model_dump_json()) == over_http.json()
    assert over_http.json()["filename"] == "a.jsonl"
    listing = call("list_available_models", query=ListModelsQuery())
    assert isinstance(listing, RawJSON) and orjson.loads(listing.body) == gw.client.get("/v1/models",
                                                                                        headers=auth).json()
    card = call("retrieve_model", path={"model_id": "fake-chat"})
    assert card.id == "fake-chat"
    download = call("download_file", path={"file_id": uploaded["id"]})
    assert isinstance(download, BinaryResult) and b"".join(download.chunks) == b'{"x": 1}\n'
    url = call("get_signed_url", path={"file_id": uploaded["id"]}, query=SignedUrlQuery())
    assert url.url.startswith("https://gw.example/files/signed/")  # no request: the configured address
    jobs = call("get_batch_jobs", query=ListBatchJobsQuery())
    assert (jobs.total, jobs.data) == (0, [])
    with pytest.raises(NotFound):
        call("delete_file", path={"file_id": "00000000-0000-0000-0000-000000000000"})

    records = gw.records()[before:]  # the download is the caller's to finish once sent: not recorded here
    assert [(r.operation, r.status, r.model) for r in records] == [
        ("retrieve_file", 200, None), ("retrieve_file", 200, None), ("list_available_models", 200, None),
        ("list_available_models", 200, None), ("retrieve_model", 200, "fake-chat"), ("get_signed_url", 200, None),
        ("get_batch_jobs", 200, None), ("delete_file", 404, None)]
    assert _billing(records[0]) == _billing(records[1])  # as a job would call it, and over HTTP
