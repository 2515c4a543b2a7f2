"""The Redis limiter against a real redis-server on loopback: the admission script itself, and an outage over HTTP
(the server killed mid-run, then restarted): 503 LIMITS_UNAVAILABLE in each dialect's shape, or admitted uncounted,
then counted again. The limiter's semantics are the contract in tests/unit/test_limits.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from dialect_support import DialectApi, data, error
from mistral_gateway.config import Settings
from mistral_gateway.http.app import create_app
from mistral_gateway.services.container import build_services
from mistral_gateway.storage.limits import Bucket
from mistral_gateway.storage.limits_redis import ADMIT_SCRIPT, RedisLimiter
from redis_server import RedisServer, redis_server
from support import wait_until

pytestmark = pytest.mark.e2e  # starts redis-server processes

NOW = 1_700_000_020.0
PASSWORD = "pw-never-logged-7f3a"
BOUND = 30.0  # seconds any wait may take before the test calls it a hang (not a timing assertion)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server(password=PASSWORD) as server:
        yield server


def test_the_script_counts_in_every_bucket_or_in_none(redis: RedisServer) -> None:
    """Straight at the Lua level: the second bucket refuses, so the first's window and lease set stay untouched."""
    client = redis.client()
    script = client.register_script(ADMIT_SCRIPT)
    keys = ["p:w:token:a", "p:l:token:a", "p:w:ws:team", "p:l:ws:team"]

    def admit(lease: str) -> list[int]:
        # token a: 10 rpm, 5 concurrent; workspace team: 1 rpm
        return [int(v) for v in script(keys=keys, args=[NOW, lease, NOW + 60, 120, 121, 10, "", 5, 1, "", ""])]

    assert admit("first") == [0, 0]
    assert client.hmget(keys[0], "r") == [b"1"] and client.zcard(keys[1]) == 1
    assert admit("second") == [2, 1]  # bucket 2 over its rpm
    assert client.hmget(keys[0], "r") == [b"1"] and client.zcard(keys[1]) == 1  # nothing counted, no lease
    assert client.hmget(keys[2], "r") == [b"1"] and not client.exists(keys[3])  # no concurrency limit: no set
    assert 0 < client.ttl(keys[0]) <= 120 and 0 < client.ttl(keys[1]) <= 121  # windows and leases expire alone
    client.script_flush()  # NOSCRIPT next time: the limiter loads the script again by itself
    limiter = RedisLimiter(client, prefix="q:")
    assert limiter.admit([Bucket("token", "b", requests_per_minute=1)], None, NOW) is None
    refusal = limiter.admit([Bucket("token", "b", requests_per_minute=1)], None, NOW)
    assert refusal is not None and refusal.limit == "requests_per_minute"
    client.close()


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_an_outage_fails_closed_or_open_and_ends_when_redis_is_back(
        mode: str, redis: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    settings = Settings(data_dir=tmp_path / "data", bootstrap_dev_token=False, redis_url=redis.url,
                        redis_key_prefix="gw:", redis_failure_mode=mode, redis_breaker_seconds=0.5)
    services = build_services(settings)
    limited, _ = services.tokens.create("limited", requests_per_minute=1000)
    unlimited, _ = services.tokens.create("free")
    watcher = redis.client()

    def counted() -> int:
        return sum(int(watcher.hget(key, "r") or 0) for key in watcher.scan_iter("gw:w:*"))

    try:
        with TestClient(create_app(services=services)) as client:
            apis = [DialectApi(client, dialect, limited) for dialect in ("native", "lowcode")]
            for api in apis:
                data(api("GET", "/models"), api.dialect)
            assert counted() == 2
            assert services.redis is not None and services.redis.ping()

            redis.kill()
            assert not services.redis.ping()
            for _ in range(3):
                for api in apis:
                    r = api("GET", "/models")
                    if mode == "open":
                        data(r, api.dialect)  # admitted, uncounted
                        continue
                    err = error(r, api.dialect, 503)
                    assert err["code"] == "LIMITS_UNAVAILABLE" and int(r.headers["retry-after"]) >= 1
                    if api.dialect == "native":
                        assert err["type"] == "server_error"
            outages = [r for r in caplog.records if "rate limits unavailable" in r.getMessage()]
            assert len(outages) == 1  # once per outage, not per request

            redis.start()  # same port: the pool reconnects once the breaker lets a call through
            native = apis[0]
            wait_until(lambda: native("GET", "/models").status_code == 200 and counted() >= 3, bound=BOUND)
            assert any("rate limits available again" in r.getMessage() for r in caplog.records)
            # a principal without limits never touches Redis, outage or not
            free = DialectApi(client, "native", unlimited)
            redis.kill()
            data(free("GET", "/models"), "native")
    finally:
        watcher.close()
        services.close()
    assert PASSWORD not in caplog.text
