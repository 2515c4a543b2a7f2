"""The Redis connection the limiter and the notice bus share, and the breaker that keeps an outage cheap.

Timeouts are short (``redis_timeout_seconds``) so a dead server costs one bounded wait, and after a failure the
breaker fails every call at once for ``redis_breaker_seconds`` instead of letting each request wait for its own
timeout. The URL may carry a password: it is never logged or put into an error (``describe`` hides it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from mistral_gateway.storage.limits import LimiterUnavailable

__all__ = ["Breaker", "RedisLink", "RedisUnavailable", "connect", "describe"]


class RedisUnavailable(LimiterUnavailable):
    """Redis could not be reached (or the breaker is open); ``retry_after``: seconds worth waiting."""


def describe(url: str) -> str:
    """The URL without its credentials, for logs: ``redis://host:port/db``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    where = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{where}{parts.path}"


def connect(url: str, *, timeout: float, socket_timeout: float | None = None, health_check_interval: int = 0) -> Any:
    """A redis-py client (its own connection pool) with short connect and socket timeouts and no retries: the
    breaker, not the client, decides when to try again."""
    import redis  # the optional `redis` extra
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, socket_connect_timeout=timeout,
                                socket_timeout=timeout if socket_timeout is None else socket_timeout,
                                retry_on_timeout=False, retry=Retry(NoBackoff(), 0),
                                health_check_interval=health_check_interval)


class Breaker:
    """Open for ``seconds`` after a failure: ``call`` then raises at once without touching the network."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._open_until = 0.0
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        return self._clock() < self._open_until

    def call(self, fn: Callable[[], Any]) -> Any:
        import redis

        if self.open:
            raise RedisUnavailable("Redis is unreachable (recent failure)", self.retry_after())
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:  # down or too slow: wait a little
            with self._lock:
                self._open_until = self._clock() + self.seconds
            # the exception's own text is left out: it can repeat the connection parameters
            raise RedisUnavailable(f"Redis is unreachable ({type(exc).__name__})", self.retry_after()) from None
        except redis.RedisError as exc:  # it answered, refusing (OOM, READONLY): no reason to stop asking
            raise RedisUnavailable(f"Redis refused the call ({type(exc).__name__})", self.retry_after()) from None

    def retry_after(self) -> float:
        return max(1.0, self.seconds)


class RedisLink:
    """What a process holds when ``redis_url`` is set: the client (one pool, short timeouts) the limiter and
    publishers share, the breaker they share, and the notice bus (a background component)."""

    def __init__(self, client: Any, breaker: Breaker, bus: Any) -> None:
        self.client = client
        self.breaker = breaker
        self.bus = bus

    def ping(self) -> bool:
        """Whether Redis answers now: for the readiness endpoint. Never raises; bounded by the socket timeout,
        and answers False at once while the breaker is open."""
        try:
            return bool(self.breaker.call(self.client.ping))
        except RedisUnavailable:
            return False

    def probe(self, timeout: float) -> None:
        """The readiness check (``services.readiness``): raises ``RedisUnavailable`` when Redis does not answer.
        The client's socket timeout (``redis_timeout_seconds``) bounds it, not ``timeout``."""
        self.breaker.call(self.client.ping)

    def close(self) -> None:
        self.bus.close()
        self.client.close()
