"""The Redis pieces without a server: the breaker, the notice bus's dispatch, SharedEpoch, and LimitService failing
closed or open when its limiter's store is unreachable (real servers: tests/integration/test_redis_*.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from mistral_gateway.errors import ServiceUnavailable
from mistral_gateway.services.limits import LimitService
from mistral_gateway.services.tokens import Principal
from mistral_gateway.storage.epoch import FileEpoch
from mistral_gateway.storage.limits import LimiterUnavailable
from mistral_gateway.storage.redis_bus import RedisBus, SharedEpoch
from mistral_gateway.storage.redis_conn import Breaker, RedisUnavailable


class FakeClient:
    def __init__(self) -> None:
        self.published: list[tuple[str, str]] = []
        self.down = False

    def publish(self, channel: str, message: str) -> int:
        if self.down:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.published.append((channel, message))
        return 1


def test_the_breaker_fails_fast_after_a_failure_until_its_time_is_up(clock: Any) -> None:
    breaker = Breaker(2.0, clock=clock)
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise redis.TimeoutError("Timeout reading from redis://:secret@10.0.0.1:6379")

    with pytest.raises(RedisUnavailable) as first:
        breaker.call(down)
    assert "secret" not in str(first.value) and first.value.retry_after == 2.0
    with pytest.raises(RedisUnavailable):
        breaker.call(down)
    assert len(calls) == 1  # the second call never reached the network
    clock.advance(2.1)
    assert breaker.call(lambda: "pong") == "pong"


def test_notices_reach_the_handlers_of_their_topic_from_other_senders_only(tmp_path: Path) -> None:
    client = FakeClient()
    bus = RedisBus(client, prefix="gw:", breaker=Breaker(1.0))
    epoch = SharedEpoch(FileEpoch(tmp_path / "tokens.epoch"), bus, "tokens")
    woken: list[str] = []
    bus.on("jobs", lambda: woken.append("jobs"))
    before = epoch.current()
    epoch.bump()  # publishes, and moves the local file
    assert client.published == [("gw:notices", json.dumps({"topic": "tokens", "from": bus.sender}))]
    after_bump = epoch.current()
    assert after_bump != before
    bus._dispatch(client.published[0][1])  # our own notice, echoed back: ignored
    assert epoch.current() == after_bump
    bus._dispatch(json.dumps({"topic": "tokens", "from": "another"}))
    assert epoch.current() != after_bump and woken == []
    bus._dispatch(json.dumps({"topic": "jobs", "from": "another"}))
    bus._dispatch(b"not json")  # someone else's message on the channel
    assert woken == ["jobs"]
    moved = epoch.current()
    bus._everything_changed()  # after a (re)subscription
    assert epoch.current() != moved and woken == ["jobs", "jobs"]


def test_a_lost_publish_is_logged_once_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    client = FakeClient()
    bus = RedisBus(client, prefix="gw:", breaker=Breaker(0.0))
    client.down = True
    for _ in range(3):
        bus.publish("tokens")
    assert len([r for r in caplog.records if "not published" in r.getMessage()]) == 1
    client.down = False
    bus.publish("tokens")
    assert len(client.published) == 1


class Unreachable:
    def admit(self, *args: Any) -> None:
        raise LimiterUnavailable("Redis is unreachable (ConnectionError)", 2.0)

    settle = renew = admit

    def close(self) -> None:
        pass


LIMITED = Principal("tok_1", "ws", "default", frozenset({"*"}), None, requests_per_minute=5)


@pytest.mark.parametrize("fail_open", [False, True])
def test_an_unreachable_limiter_fails_closed_or_open_and_logs_once(fail_open: bool,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    service = LimitService(Unreachable(), fail_open=fail_open)

    async def scenario() -> None:
        for _ in range(3):
            if fail_open:
                assert await service.admit(LIMITED) is None  # admitted, nothing to settle
                continue
            with pytest.raises(ServiceUnavailable) as refused:
                await service.admit(LIMITED)
            assert refused.value.status == 503 and refused.value.code == "LIMITS_UNAVAILABLE"
            assert refused.value.headers == {"Retry-After": "2"}

    anyio.run(scenario)
    assert len([r for r in caplog.records if "rate limits unavailable" in r.getMessage()]) == 1
