"""Rate limits over HTTP (429 + Retry-After in both dialects, per token and per workspace) and usage records."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import func, select
from starlette.requests import ClientDisconnect
from starlette.testclient import TestClient

from db_backends import app_database_url
from mistral_gateway.config import LimitPolicy, ModelEntry, Settings, WorkspacePolicy
from mistral_gateway.http.app import create_app
from mistral_gateway.services.container import Services, build_services
from mistral_gateway.services.limits import LimitService
from mistral_gateway.storage.limits import Bucket, DatabaseLimiter
from mistral_gateway.storage.records import UsageRecord
from mistral_gateway.storage.tables import RateLease, RateWindow

NOW = 1_700_000_000.0  # 40 s before the minute ends: Retry-After for per-minute limits is 40
FIM = "<|fim_prefix|>{prompt}<|fim_suffix|>{suffix}<|fim_middle|>"
MODELS = [
    ModelEntry(id="fake-chat", aliases=["mistral-small-latest"], engine="fake", max_context_length=256,
               capabilities=["completion_chat", "completion_fim"], fim_template=FIM),
    ModelEntry(id="fake-embed", engine="fake", capabilities=[]),
]
CHAT = {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 5}


@dataclass
class Env:
    client: TestClient
    services: Services
    limiter: DatabaseLimiter

    def token(self, workspace: str = "default", scopes: list[str] | None = None, **limits: int) -> str:
        token, _ = self.services.tokens.create("t", workspace=workspace, scopes=scopes or ["*"], **limits)
        return token

    def token_id(self, token: str) -> str:
        return self.services.tokens.verify(token).token_id

    def get(self, token: str, path: str = "/models", lowcode: bool = False) -> httpx.Response:
        if lowcode:
            return self.client.get(f"/mistralai/v1{path}", params={"api_token": token})
        return self.client.get(f"/v1{path}", headers={"Authorization": f"Bearer {token}"})

    def post(self, token: str, path: str, body: dict[str, Any], lowcode: bool = False) -> httpx.Response:
        if lowcode:
            return self.client.post(f"/mistralai/v1{path}", params={"api_token": token}, json=body)
        return self.client.post(f"/v1{path}", headers={"Authorization": f"Bearer {token}"}, json=body)

    def usage(self) -> list[UsageRecord]:
        """Every usage record, oldest first."""
        return list(reversed(self.services.usage.list(limit=1000)[0]))


@pytest.fixture
def make_env(tmp_path: Path, clock: Any, database_backend: str,
             request: pytest.FixtureRequest) -> Iterator[Callable[..., Env]]:
    opened: list[tuple[TestClient, Services]] = []
    databases = ExitStack()  # each gateway's own database, dropped after its services close
    clock.now = NOW

    def make(workspaces: list[WorkspacePolicy] | None = None, default: LimitPolicy | None = None) -> Env:
        url = databases.enter_context(app_database_url(database_backend, request))
        settings = Settings(data_dir=tmp_path / f"data{len(opened)}", database_url=url, bootstrap_dev_token=False,
                            models=MODELS,
                            workspaces=workspaces or [], default_token_limits=default or LimitPolicy())
        services = build_services(settings)
        services.limits.close()
        limiter = DatabaseLimiter(services.db)
        services.limits = LimitService(limiter, workspaces=settings.workspaces,
                                       default=settings.default_token_limits, clock=clock)
        client = TestClient(create_app(services=services))
        client.__enter__()
        opened.append((client, services))
        return Env(client, services, limiter)

    yield make
    for client, services in opened:
        client.__exit__(None, None, None)
        services.close()
    databases.close()


def assert_429(r: httpx.Response, lowcode: bool, *words: str, retry_after: str = "40") -> None:
    assert r.status_code == 429, r.text
    assert r.headers["retry-after"] == retry_after
    if lowcode:
        error = r.json()["data"]["error"]
        assert set(error) == {"message", "code"}
    else:
        error = r.json()
        assert error["object"] == "error" and error["type"] == "rate_limit_error" and error["param"] is None
    assert error["code"] == "RATE_LIMIT_EXCEEDED"
    for word in words:
        assert word in error["message"], error["message"]


@pytest.mark.parametrize("lowcode", [False, True])
def test_token_requests_per_minute(make_env: Callable[..., Env], clock: Any, lowcode: bool) -> None:
    env = make_env()
    token = env.token(requests_per_minute=2)
    assert [env.get(token, lowcode=lowcode).status_code for _ in range(2)] == [200, 200]
    assert_429(env.get(token, lowcode=lowcode), lowcode, f"token {env.token_id(token)}", "2 requests per minute")
    other = env.token()
    assert env.get(other, lowcode=lowcode).status_code == 200  # another token has its own budget
    clock.advance(40)  # the next minute
    assert env.get(token, lowcode=lowcode).status_code == 200


@pytest.mark.parametrize("lowcode", [False, True])
def test_workspace_requests_per_minute_are_shared(make_env: Callable[..., Env], lowcode: bool) -> None:
    env = make_env(workspaces=[WorkspacePolicy(name="team", requests_per_minute=3)])
    first, second, outsider = env.token("team"), env.token("team"), env.token("other")
    assert env.get(first, lowcode=lowcode).status_code == 200
    assert env.get(first, lowcode=lowcode).status_code == 200
    assert env.get(second, lowcode=lowcode).status_code == 200
    assert_429(env.get(second, lowcode=lowcode), lowcode, "workspace 'team'", "3 requests per minute")
    assert env.get(outsider, lowcode=lowcode).status_code == 200


def test_default_token_limits_apply_to_tokens_without_their_own(make_env: Callable[..., Env]) -> None:
    env = make_env(default=LimitPolicy(requests_per_minute=1))
    plain, generous = env.token(), env.token(requests_per_minute=5)
    assert env.get(plain).status_code == 200
    assert_429(env.get(plain), False, "1 requests per minute")
    assert [env.get(generous).status_code for _ in range(5)] == [200] * 5


@pytest.mark.parametrize("lowcode", [False, True])
def test_token_tokens_per_minute(make_env: Callable[..., Env], clock: Any, lowcode: bool) -> None:
    env = make_env()
    token = env.token(tokens_per_minute=5)
    first = env.post(token, "/chat/completions", CHAT, lowcode=lowcode)
    assert first.status_code == 200
    usage = (first.json()["data"] if lowcode else first.json())["usage"]
    assert usage["total_tokens"] >= 5  # the first request is admitted whatever its size, then counted
    assert env.limiter.counts(Bucket("token", env.token_id(token)), clock.now)[1] == usage["total_tokens"]
    assert_429(env.post(token, "/chat/completions", CHAT, lowcode=lowcode), lowcode, "5 tokens per minute")
    assert_429(env.get(token, lowcode=lowcode), lowcode, "tokens per minute")  # any request, until the minute ends
    clock.advance(40)
    assert env.post(token, "/chat/completions", CHAT, lowcode=lowcode).status_code == 200


def test_workspace_tokens_per_minute_count_embeddings_too(make_env: Callable[..., Env]) -> None:
    env = make_env(workspaces=[WorkspacePolicy(name="team", tokens_per_minute=6)])
    a, b = env.token("team"), env.token("team")
    r = env.post(a, "/embeddings", {"model": "fake-embed", "input": ["one two three", "four"]}, lowcode=True)
    assert r.status_code == 200 and r.json()["data"]["usage"]["prompt_tokens"] == 8
    assert_429(env.post(b, "/embeddings", {"model": "fake-embed", "input": "x"}, lowcode=True), True,
               "workspace 'team' allows 6 tokens per minute")


@pytest.fixture
def held_chat() -> Iterator[Callable[[Services], tuple[threading.Event, threading.Event]]]:
    """Make chat completions wait at a gate, so a request stays in flight while the test looks."""
    gates: list[threading.Event] = []

    def hold(services: Services) -> tuple[threading.Event, threading.Event]:
        entered, gate = threading.Event(), threading.Event()
        gates.append(gate)
        original = services.chat.complete

        async def held(request: Any, resolved: Any = None) -> Any:
            entered.set()
            await anyio.to_thread.run_sync(gate.wait)
            return await original(request, resolved)

        services.chat.complete = held  # type: ignore[method-assign]
        return entered, gate

    yield hold
    for gate in gates:
        gate.set()


@pytest.mark.parametrize(("scope", "lowcode"), [("token", False), ("workspace", True)])
def test_concurrent_requests(make_env: Callable[..., Env], held_chat: Any, scope: str, lowcode: bool) -> None:
    if scope == "token":
        env = make_env()
        busy = idle = env.token(concurrent_requests=1)
        words = "concurrent requests"
    else:
        env = make_env(workspaces=[WorkspacePolicy(name="team", concurrent_requests=1)])
        busy, idle = env.token("team"), env.token("team")
        words = "workspace 'team' allows 1 concurrent requests"
    entered, gate = held_chat(env.services)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(env.post, busy, "/chat/completions", CHAT, lowcode)
        assert entered.wait(10), "the first request never reached the handler"
        assert_429(env.get(idle, lowcode=lowcode), lowcode, words, retry_after="1")
        assert_429(env.post(idle, "/chat/completions", CHAT, lowcode=lowcode), lowcode, words, retry_after="1")
        gate.set()
        assert first.result(timeout=10).status_code == 200
    assert env.get(idle, lowcode=lowcode).status_code == 200  # the lease went back with the response


def test_leases_go_back_after_errors_and_streams(make_env: Callable[..., Env]) -> None:
    env = make_env()
    token = env.token(concurrent_requests=1)
    assert env.post(token, "/chat/completions", {**CHAT, "model": "nope"}).status_code == 404
    assert env.post(token, "/chat/completions", {**CHAT, "stream": True}).status_code == 200
    assert env.post(token, "/chat/completions", {"model": "fake-chat"}).status_code == 422
    assert env.get(token, "/files/not-a-file").status_code == 404
    assert env.get(token).status_code == 200
    with env.services.db.session() as s:
        assert s.scalar(select(func.count()).select_from(RateLease)) == 0


def test_unlimited_tokens_never_touch_the_limiter(make_env: Callable[..., Env]) -> None:
    env = make_env(workspaces=[WorkspacePolicy(name="limited", requests_per_minute=1)])
    token = env.token()

    def refuse(*_: Any) -> Any:
        raise AssertionError("the limiter was consulted for an unlimited token")

    env.limiter.admit = refuse  # type: ignore[method-assign]
    env.limiter.settle = refuse  # type: ignore[method-assign]
    assert env.get(token).status_code == 200
    assert env.post(token, "/chat/completions", CHAT).status_code == 200
    with env.services.db.session() as s:
        assert s.scalar(select(func.count()).select_from(RateWindow)) == 0


# --- usage records ------------------------------------------------------------------------------------------


def test_usage_of_a_chat_completion(make_env: Callable[..., Env]) -> None:
    env = make_env()
    token = env.token("team")
    body = env.post(token, "/chat/completions", CHAT).json()
    [row] = env.usage()
    principal = env.services.tokens.verify(token)
    assert (row.token_id, row.workspace_id, row.workspace) == (principal.token_id, principal.workspace_id, "team")
    assert (row.operation, row.model, row.backend, row.dialect, row.status) == \
        ("create_chat_completions", "mistral-small-latest", "local", "native", 200)
    assert (row.prompt_tokens, row.completion_tokens) == (body["usage"]["prompt_tokens"],
                                                          body["usage"]["completion_tokens"])
    assert row.prompt_tokens > 0 and row.completion_tokens > 0 and row.latency_ms > 0


def test_usage_of_a_stream_fim_and_embeddings(make_env: Callable[..., Env]) -> None:
    env = make_env()
    token = env.token()
    stream = env.post(token, "/chat/completions", {**CHAT, "stream": True}, lowcode=True)
    events = [line[6:] for line in stream.text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    stream_usage = json.loads(events[-2])["usage"]
    fim = env.post(token, "/fim/completions", {"model": "fake-chat", "prompt": "def f(", "suffix": ")"}).json()
    embed = env.post(token, "/embeddings", {"model": "fake-embed", "input": ["a b c"]}).json()
    chat_row, fim_row, embed_row = env.usage()
    assert (chat_row.dialect, chat_row.status, chat_row.prompt_tokens, chat_row.completion_tokens) == \
        ("lowcode", 200, stream_usage["prompt_tokens"], stream_usage["completion_tokens"])
    assert (fim_row.operation, fim_row.model, fim_row.prompt_tokens, fim_row.completion_tokens) == \
        ("create_fim_completions", "fake-chat", fim["usage"]["prompt_tokens"], fim["usage"]["completion_tokens"])
    assert (embed_row.operation, embed_row.model, embed_row.prompt_tokens, embed_row.completion_tokens) == \
        ("create_embeddings", "fake-embed", embed["usage"]["prompt_tokens"], 0)


def test_failed_requests_are_recorded_unauthenticated_ones_are_not(make_env: Callable[..., Env]) -> None:
    env = make_env()
    token, files_only = env.token(requests_per_minute=2), env.token(scopes=["files"])
    assert env.post(token, "/chat/completions", {**CHAT, "model": "nope"}).status_code == 404
    assert env.get(files_only).status_code == 403
    assert env.get("at_" + "x" * 43).status_code == 401
    assert env.client.get("/v1/models").status_code == 401
    assert env.get(token, "/models/fake-chat").status_code == 200
    assert env.get(token).status_code == 429
    rows = env.usage()
    assert [(r.operation, r.status) for r in rows] == [("create_chat_completions", 404), ("list_available_models", 403),
                                                      ("retrieve_model", 200), ("list_available_models", 429)]
    assert rows[0].token_id == env.token_id(token) and rows[1].token_id == env.token_id(files_only)
    assert rows[2].model == "fake-chat"
    assert all(r.prompt_tokens == r.completion_tokens == 0 for r in rows)


def test_a_stream_the_client_abandons_is_recorded_with_its_tokens(make_env: Callable[..., Env]) -> None:
    env = make_env()
    token = env.token(concurrent_requests=1)
    app = create_app(services=env.services)
    body = json.dumps({**CHAT, "stream": True, "max_tokens": 8, "min_tokens": 6}).encode()
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
             "root_path": "", "query_string": b"", "server": ("testserver", 80), "client": ("127.0.0.1", 5000),
             "headers": [(b"authorization", f"Bearer {token}".encode()), (b"content-type", b"application/json")]}
    sent: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if not sent:
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            if len(sent) == 3:  # the role chunk and two content chunks went out; then the client is gone
                raise OSError("connection reset by peer")
            sent.append(message["body"])

    async def run() -> None:
        with pytest.raises(ClientDisconnect):
            await app(scope, receive, send)

    anyio.run(run)
    assert b'"role":"assistant"' in sent[0] and b"[DONE]" not in b"".join(sent)
    [row] = env.usage()
    assert row.status == 499 and row.operation == "create_chat_completions"
    assert row.prompt_tokens == 0 and row.completion_tokens == 3  # the content chunks produced before it ended
    with env.services.db.session() as s:
        assert s.scalar(select(func.count()).select_from(RateLease)) == 0
