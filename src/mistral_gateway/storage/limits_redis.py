"""The ``RateLimiter`` on Redis: the same semantics as ``DatabaseLimiter``, one round trip per call.

A bucket's window is a hash ``<prefix>w:<bucket key>:<window start>`` (fields ``r`` requests, ``t`` tokens) that
expires on its own two windows later; its concurrency leases are a sorted set ``<prefix>l:<bucket key>`` of lease
ids scored by expiry. ``admit`` is one Lua script (EVALSHA; redis-py loads it once and again on NOSCRIPT) that
checks every bucket, then counts in all of them or in none, so a refused request counts nowhere. ``settle`` and
``renew`` are one pipeline each. A lease's keys are remembered here until it is settled: only the process that took
a lease renews it. All keys of one admission must live on one server (no Redis Cluster).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from typing import Any

from mistral_gateway.storage.limits import (
    CONCURRENCY_RETRY,
    LEASE_SECONDS,
    MAX_SETTLED_TOKENS,
    WINDOW_SECONDS,
    Bucket,
    Refusal,
    window_of,
)
from mistral_gateway.storage.redis_conn import Breaker

__all__ = ["ADMIT_SCRIPT", "RedisLimiter"]

# KEYS: per bucket i, its window hash (2i-1) and lease set (2i).
# ARGV: now, lease id, lease expiry, window ttl, lease ttl, then per bucket rpm, tpm, concurrency ("" = none).
# Returns {0, 0} when admitted, else {i, limit} with limit 1 rpm, 2 tpm, 3 concurrency.
ADMIT_SCRIPT = """
local now, lease, expiry = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local n = #KEYS / 2
for i = 1, n do
  local rpm, tpm, conc = tonumber(ARGV[3 + 3 * i]), tonumber(ARGV[4 + 3 * i]), tonumber(ARGV[5 + 3 * i])
  if rpm or tpm then
    local counts = redis.call('HMGET', KEYS[2 * i - 1], 'r', 't')
    if rpm and (tonumber(counts[1]) or 0) + 1 > rpm then return {i, 1} end
    if tpm and (tonumber(counts[2]) or 0) >= tpm then return {i, 2} end
  end
  if conc then
    redis.call('ZREMRANGEBYSCORE', KEYS[2 * i], '-inf', now)
    if redis.call('ZCARD', KEYS[2 * i]) >= conc then return {i, 3} end
  end
end
for i = 1, n do
  redis.call('HINCRBY', KEYS[2 * i - 1], 'r', 1)
  redis.call('EXPIRE', KEYS[2 * i - 1], ARGV[4])
  if tonumber(ARGV[5 + 3 * i]) then
    redis.call('ZADD', KEYS[2 * i], expiry, lease)
    redis.call('EXPIRE', KEYS[2 * i], ARGV[5])
  end
end
return {0, 0}
"""
_LIMITS = {1: "requests_per_minute", 2: "tokens_per_minute", 3: "concurrent_requests"}


def _arg(value: int | None) -> str:
    return "" if value is None else str(value)


class RedisLimiter:
    def __init__(self, client: Any, *, prefix: str = "mistral-gateway:", lease_seconds: float = LEASE_SECONDS,
                 breaker: Breaker | None = None) -> None:
        self._client = client
        self._prefix = prefix
        self.lease_seconds = lease_seconds
        self._breaker = breaker or Breaker(0.0)
        self._admit = client.register_script(ADMIT_SCRIPT)
        self._leases: dict[str, list[str]] = {}  # lease id -> its sorted sets, until settled
        self._lock = threading.Lock()

    def _window_key(self, bucket: Bucket, window: int) -> str:
        return f"{self._prefix}w:{bucket.key}:{window}"

    def _lease_key(self, bucket: Bucket) -> str:
        return f"{self._prefix}l:{bucket.key}"

    @property
    def _lease_ttl(self) -> int:
        # real seconds, while scores follow the caller's clock: long enough that only an abandoned set expires
        return int(self.lease_seconds * 2) + 1

    def admit(self, buckets: Sequence[Bucket], lease: str | None, now: float) -> Refusal | None:
        window = window_of(now)
        keys: list[str] = []
        args: list[Any] = [now, lease or "", now + self.lease_seconds, 2 * WINDOW_SECONDS, self._lease_ttl]
        for bucket in buckets:
            assert bucket.concurrent_requests is None or lease is not None, \
                "a concurrency-limited bucket needs a lease id"
            keys += [self._window_key(bucket, window), self._lease_key(bucket)]
            args += [_arg(bucket.requests_per_minute), _arg(bucket.tokens_per_minute),
                     _arg(bucket.concurrent_requests)]
        index, limit = self._breaker.call(lambda: self._admit(keys=keys, args=args))
        if index == 0:
            leased = [self._lease_key(b) for b in buckets if b.concurrent_requests is not None]
            if leased and lease is not None:
                with self._lock:
                    self._leases[lease] = leased
            return None
        bucket = buckets[int(index) - 1]
        retry = CONCURRENCY_RETRY if limit == 3 else window + WINDOW_SECONDS - now
        return Refusal(bucket, _LIMITS[int(limit)], retry)

    def settle(self, buckets: Sequence[Bucket], lease: str | None, tokens: int, now: float) -> None:
        tokens = min(tokens, MAX_SETTLED_TOKENS)
        counted = [b for b in buckets if b.tokens_per_minute is not None] if tokens > 0 else []
        if lease is not None:
            with self._lock:
                self._leases.pop(lease, None)
        if not counted and lease is None:
            return
        window = window_of(now)
        pipe = self._client.pipeline(transaction=False)
        for bucket in counted:
            key = self._window_key(bucket, window)
            pipe.hincrby(key, "t", tokens)
            pipe.expire(key, 2 * WINDOW_SECONDS)
        if lease is not None:
            for bucket in buckets:
                if bucket.concurrent_requests is not None:
                    pipe.zrem(self._lease_key(bucket), lease)
        self._breaker.call(pipe.execute)

    def renew(self, leases: Collection[str], now: float) -> None:
        with self._lock:
            held = [(lease, keys) for lease in leases if (keys := self._leases.get(lease))]
        if not held:
            return
        pipe = self._client.pipeline(transaction=False)
        for lease, keys in held:
            for key in keys:
                pipe.zadd(key, {lease: now + self.lease_seconds}, xx=True)  # a lapsed lease stays gone
                pipe.expire(key, self._lease_ttl)
        self._breaker.call(pipe.execute)

    def close(self) -> None:
        pass  # the client belongs to the caller (a RedisLink, shared with the notice bus)

    def counts(self, bucket: Bucket, now: float) -> tuple[int, int, int]:
        """(requests, tokens) in the current window and live leases: for tests and diagnostics."""
        requests, tokens = self._client.hmget(self._window_key(bucket, window_of(now)), "r", "t")
        leases = self._client.zcount(self._lease_key(bucket), f"({now}", "+inf")
        return int(requests or 0), int(tokens or 0), int(leases)
