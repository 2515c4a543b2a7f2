"""Rate limiters (memory, database and Redis: one contract, same semantics) and the LimitService that applies them
to principals. The Redis runs use a real redis-server on loopback (tests/redis_server.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import func, select

from db_backends import BACKENDS, migrated_database
from mistral_gateway.config import LimitPolicy, WorkspacePolicy
from mistral_gateway.errors import RateLimited
from mistral_gateway.services.limits import LimitService
from mistral_gateway.services.tokens import Principal
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.limits import LEASE_SECONDS, Bucket, DatabaseLimiter
from mistral_gateway.storage.limits_memory import MemoryLimiter
from mistral_gateway.storage.tables import RateWindow
from redis_server import RedisServer, redis_server

NOW = 1_700_000_020.0  # 40 s into a minute: the window ends 20 s later


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(params=["memory", *BACKENDS, pytest.param("redis", marks=pytest.mark.e2e)])
def limiter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The memory limiter, the database one on each backend, and the Redis one (a key prefix per test)."""
    if request.param == "memory":
        yield MemoryLimiter()
        return
    if request.param == "redis":
        from mistral_gateway.storage.limits_redis import RedisLimiter

        server: RedisServer = request.getfixturevalue("redis")
        limiter = RedisLimiter(server.client(), prefix=server.prefix())
        yield limiter
        limiter.close()
        return
    with migrated_database(request.param, request, tmp_path) as db:
        yield DatabaseLimiter(db)


def test_rpm_counts_in_fixed_minute_windows(limiter: Any) -> None:
    bucket = Bucket("token", "t1", requests_per_minute=3)
    assert [limiter.admit([bucket], None, NOW + i) for i in range(3)] == [None, None, None]
    refusal = limiter.admit([bucket], None, NOW + 5)
    assert refusal is not None and refusal.limit == "requests_per_minute" and refusal.bucket == bucket
    assert refusal.retry_after == pytest.approx(15.0)  # until the minute ends
    assert limiter.counts(bucket, NOW)[0] == 3  # the refused request was not counted
    assert limiter.admit([bucket], None, NOW + 20) is None  # a new window
    assert limiter.counts(bucket, NOW + 20)[0] == 1


def test_a_refused_request_counts_in_no_bucket(limiter: Any) -> None:
    token = Bucket("token", "t1", requests_per_minute=10)
    workspace = Bucket("workspace", "team", requests_per_minute=2)
    other = Bucket("token", "t2", requests_per_minute=10)
    assert limiter.admit([token, workspace], None, NOW) is None
    assert limiter.admit([other, workspace], None, NOW) is None
    refusal = limiter.admit([token, workspace], None, NOW)
    assert refusal is not None and refusal.bucket == workspace
    assert limiter.counts(token, NOW)[0] == 1 and limiter.counts(workspace, NOW)[0] == 2


def test_tpm_refuses_once_the_window_reached_its_budget(limiter: Any) -> None:
    bucket = Bucket("token", "t1", tokens_per_minute=100)
    assert limiter.admit([bucket], None, NOW) is None
    limiter.settle([bucket], None, 60, NOW)
    assert limiter.admit([bucket], None, NOW) is None  # 60 < 100: admitted, its own size is not known yet
    limiter.settle([bucket], None, 50, NOW + 1)
    assert limiter.counts(bucket, NOW)[:2] == (2, 110)
    refusal = limiter.admit([bucket], None, NOW + 2)
    assert refusal is not None and refusal.limit == "tokens_per_minute"
    assert refusal.retry_after == pytest.approx(18.0)
    assert limiter.admit([bucket], None, NOW + 20) is None


def test_tokens_count_only_where_tpm_applies(limiter: Any) -> None:
    rpm_only = Bucket("token", "t1", requests_per_minute=5)
    tpm = Bucket("workspace", "team", tokens_per_minute=1000)
    assert limiter.admit([rpm_only, tpm], None, NOW) is None
    limiter.settle([rpm_only, tpm], None, 70, NOW)
    assert limiter.counts(rpm_only, NOW)[1] == 0 and limiter.counts(tpm, NOW)[1] == 70


def test_absurd_token_counts_neither_overflow_nor_keep_the_lease(limiter: Any) -> None:
    """An upstream may report any count: settling 2**70 tokens twice used to overflow SQLite's INTEGER, failing
    the whole settle (the concurrency lease stayed held)."""
    tpm = Bucket("token", "t1", tokens_per_minute=1000, concurrent_requests=1)
    assert limiter.admit([tpm], "a", NOW) is None
    limiter.settle([tpm], "a", 2**70, NOW)
    for _ in range(3):
        limiter.settle([tpm], None, 2**62, NOW)
    _, tokens, leases = limiter.counts(tpm, NOW)
    assert leases == 0 and 1000 <= tokens < 2**63


def test_concurrency_leases(limiter: Any) -> None:
    bucket = Bucket("token", "t1", concurrent_requests=2)
    assert limiter.admit([bucket], "a", NOW) is None
    assert limiter.admit([bucket], "b", NOW) is None
    refusal = limiter.admit([bucket], "c", NOW)
    assert refusal is not None and refusal.limit == "concurrent_requests" and refusal.retry_after == 1.0
    assert limiter.counts(bucket, NOW)[2] == 2
    limiter.settle([bucket], "a", 0, NOW)
    limiter.settle([bucket], "a", 0, NOW)  # settling twice is harmless
    assert limiter.admit([bucket], "c", NOW) is None
    assert limiter.counts(bucket, NOW)[2] == 2


def test_one_lease_covers_token_and_workspace(limiter: Any) -> None:
    token = Bucket("token", "t1", concurrent_requests=5)
    workspace = Bucket("workspace", "team", concurrent_requests=1)
    assert limiter.admit([token, workspace], "a", NOW) is None
    refusal = limiter.admit([Bucket("token", "t2", concurrent_requests=5), workspace], "b", NOW)
    assert refusal is not None and refusal.bucket == workspace
    assert limiter.counts(Bucket("token", "t2"), NOW)[2] == 0  # t2 took no lease either
    limiter.settle([token, workspace], "a", 0, NOW)
    assert limiter.counts(token, NOW)[2] == limiter.counts(workspace, NOW)[2] == 0


def test_leases_lapse_unless_renewed(limiter: Any) -> None:
    """A process that dies holding leases blocks nobody for longer than LEASE_SECONDS."""
    bucket = Bucket("token", "t1", concurrent_requests=1)
    assert limiter.admit([bucket], "crashed", NOW) is None
    assert limiter.admit([bucket], "next", NOW + LEASE_SECONDS - 1) is not None
    assert limiter.admit([bucket], "next", NOW + LEASE_SECONDS + 1) is None
    limiter.renew(["next"], NOW + 2 * LEASE_SECONDS)  # still running: renewed
    assert limiter.admit([bucket], "third", NOW + 2.5 * LEASE_SECONDS) is not None
    assert limiter.admit([bucket], "third", NOW + 3.1 * LEASE_SECONDS) is None


def test_database_keeps_only_current_windows(db: Database) -> None:
    limiter = DatabaseLimiter(db)
    bucket = Bucket("token", "t1", requests_per_minute=100)
    for minute in range(5):
        limiter.admit([bucket], None, NOW + 60 * minute)
        limiter.admit([bucket], None, NOW + 60 * minute + 1)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(RateWindow)) == 1
        assert s.scalar(select(RateWindow.requests)) == 2


def test_two_database_handles_share_counts(database_url: str) -> None:
    """Separate engines (as separate processes would have) see one budget."""
    first, second = Database(database_url), Database(database_url)
    first.migrate()
    try:
        a, b = DatabaseLimiter(first), DatabaseLimiter(second)
        bucket = Bucket("workspace", "team", requests_per_minute=3, concurrent_requests=1)
        assert a.admit([bucket], "x", NOW) is None
        assert b.admit([bucket], "y", NOW) is not None  # x is in flight
        a.settle([bucket], "x", 0, NOW)
        assert b.admit([bucket], "y", NOW) is None
        b.settle([bucket], "y", 0, NOW)
        assert a.admit([bucket], "z", NOW) is None
        refusal = b.admit([bucket], "w", NOW)
        assert refusal is not None and refusal.limit == "requests_per_minute"
    finally:
        first.dispose()
        second.dispose()


# --- LimitService -------------------------------------------------------------------------------------------


def principal(token_id: str = "tok_1", workspace: str = "default",  # noqa: S107 - an id, not a secret
              **limits: int | None) -> Principal:
    return Principal(token_id, "ws-id", workspace, frozenset({"*"}), None, limits.get("rpm"), limits.get("tpm"),
                     limits.get("concurrency"))


class NoCalls:
    """A limiter that fails the test if anything reaches it."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        raise AssertionError(f"the limiter was asked to {name}")


def test_unlimited_principals_never_reach_the_limiter() -> None:
    no_calls: Any = NoCalls()
    service = LimitService(no_calls, workspaces=[WorkspacePolicy(name="other", requests_per_minute=1)])
    assert service.buckets(principal()) == ()
    assert anyio.run(service.admit, principal()) is None


def test_token_limits_override_the_default_field_by_field() -> None:
    service = LimitService(MemoryLimiter(), default=LimitPolicy(requests_per_minute=60, concurrent_requests=4),
                           workspaces=[WorkspacePolicy(name="team", tokens_per_minute=1000),
                                       WorkspacePolicy(name="free")])
    assert service.buckets(principal()) == (Bucket("token", "tok_1", 60, None, 4),)
    assert service.buckets(principal(rpm=5, tpm=100)) == (Bucket("token", "tok_1", 5, 100, 4),)
    assert service.buckets(principal(workspace="team")) == (Bucket("token", "tok_1", 60, None, 4),
                                                            Bucket("workspace", "team", None, 1000, None))
    assert service.buckets(principal(workspace="free")) == (Bucket("token", "tok_1", 60, None, 4),)
    only_workspace = LimitService(MemoryLimiter(), workspaces=[WorkspacePolicy(name="team", requests_per_minute=9)])
    assert only_workspace.buckets(principal(workspace="team")) == (Bucket("workspace", "team", 9, None, None),)


def test_admit_raises_rate_limited_naming_the_limit(clock: Any) -> None:
    clock.now = NOW
    service = LimitService(MemoryLimiter(), clock=clock, workspaces=[WorkspacePolicy(name="team",
                                                                                     concurrent_requests=1)])

    async def scenario() -> None:
        ticket = await service.admit(principal(rpm=1, workspace="team"))
        assert ticket is not None and ticket.lease is not None
        with pytest.raises(RateLimited) as over_rpm:
            await service.admit(principal(rpm=1, workspace="team"))
        assert over_rpm.value.status == 429 and over_rpm.value.code == "RATE_LIMIT_EXCEEDED"
        assert over_rpm.value.headers == {"Retry-After": "20"}
        assert "token tok_1 allows 1 requests per minute" in over_rpm.value.message
        with pytest.raises(RateLimited) as over_concurrency:
            await service.admit(principal("tok_2", workspace="team"))
        assert "workspace 'team' allows 1 concurrent requests" in over_concurrency.value.message
        assert over_concurrency.value.headers == {"Retry-After": "1"}
        await service.settle(ticket, 0)
        assert await service.admit(principal("tok_2", workspace="team")) is not None

    anyio.run(scenario)
    service.close()


def test_settle_counts_tokens_and_held_leases_are_renewed(clock: Any) -> None:
    clock.now = NOW
    limiter = MemoryLimiter()
    service = LimitService(limiter, clock=clock, default=LimitPolicy(tokens_per_minute=50, concurrent_requests=1))

    async def scenario() -> None:
        ticket = await service.admit(principal())
        assert ticket is not None
        clock.advance(LEASE_SECONDS - 1)
        assert service.renew_held() == 1  # what the renewer thread does every LEASE_SECONDS / 3
        clock.advance(LEASE_SECONDS - 1)
        assert limiter.counts(ticket.buckets[0], clock.now)[2] == 1  # alive thanks to the renewal
        await service.settle(ticket, 55)
        assert service.renew_held() == 0
        assert limiter.counts(ticket.buckets[0], clock.now)[1:] == (55, 0)
        with pytest.raises(RateLimited, match="tokens per minute"):
            await service.admit(principal())

    anyio.run(scenario)
    service.close()


def test_upgrade_from_0001_keeps_tokens_without_limits(database_url: str) -> None:
    from importlib import resources

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from mistral_gateway.storage.tokens import TokenRepository

    db = Database(database_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("mistral_gateway.storage") / "migrations"))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text("INSERT INTO workspaces VALUES ('w1', 'default', 1)"))
        conn.execute(text("INSERT INTO api_tokens (id, name, workspace_id, token_hash, prefix, scopes, created_at) "
                          "VALUES ('tok_old', 'old', 'w1', :h, 'at_x', '[\"*\"]', 1)"), {"h": "0" * 64})
    db.migrate()
    [old] = TokenRepository(db).list()
    assert (old.id, old.requests_per_minute, old.tokens_per_minute, old.concurrent_requests) == \
        ("tok_old", None, None, None)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")  # and back down, without losing the token
        assert conn.execute(text("SELECT id FROM api_tokens")).scalars().all() == ["tok_old"]
    db.dispose()
