"""An in-process ``RateLimiter`` with the database limiter's semantics. For unit tests only: its counts are not
shared between worker processes or replicas, which is what limits must be."""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence

from mistral_gateway.storage.limits import (
    CONCURRENCY_RETRY,
    LEASE_SECONDS,
    MAX_SETTLED_TOKENS,
    Bucket,
    Refusal,
    over_rate,
    window_of,
)

__all__ = ["MemoryLimiter"]


class MemoryLimiter:
    def __init__(self, *, lease_seconds: float = LEASE_SECONDS) -> None:
        self.lease_seconds = lease_seconds
        self._windows: dict[tuple[str, int], list[int]] = {}  # (key, window start) -> [requests, tokens]
        self._leases: dict[str, dict[str, float]] = {}  # key -> lease -> expires at
        self._lock = threading.Lock()

    def admit(self, buckets: Sequence[Bucket], lease: str | None, now: float) -> Refusal | None:
        window = window_of(now)
        with self._lock:
            for bucket in buckets:  # check all first: a refused request counts nowhere
                requests, tokens = self._windows.get((bucket.key, window), (0, 0))
                refusal = over_rate(bucket, requests + 1, tokens, now)
                if refusal is None and bucket.concurrent_requests is not None:
                    held = {k: t for k, t in self._leases.get(bucket.key, {}).items() if t > now}
                    self._leases[bucket.key] = held
                    if len(held) >= bucket.concurrent_requests:
                        refusal = Refusal(bucket, "concurrent_requests", CONCURRENCY_RETRY)
                if refusal is not None:
                    return refusal
            for stale in [k for k in self._windows if k[1] < window]:
                del self._windows[stale]
            for bucket in buckets:
                self._windows.setdefault((bucket.key, window), [0, 0])[0] += 1
                if bucket.concurrent_requests is not None:
                    assert lease is not None, "a concurrency-limited bucket needs a lease id"
                    self._leases.setdefault(bucket.key, {})[lease] = now + self.lease_seconds
        return None

    def settle(self, buckets: Sequence[Bucket], lease: str | None, tokens: int, now: float) -> None:
        window, tokens = window_of(now), min(tokens, MAX_SETTLED_TOKENS)  # as the stored limiters cap it
        with self._lock:
            if tokens > 0:
                for bucket in buckets:
                    if bucket.tokens_per_minute is not None:
                        self._windows.setdefault((bucket.key, window), [0, 0])[1] += tokens
            if lease is not None:
                for held in self._leases.values():
                    held.pop(lease, None)

    def renew(self, leases: Collection[str], now: float) -> None:
        with self._lock:
            for held in self._leases.values():
                for lease in leases:
                    if lease in held:
                        held[lease] = now + self.lease_seconds

    def close(self) -> None:
        pass

    def counts(self, bucket: Bucket, now: float) -> tuple[int, int, int]:
        with self._lock:
            requests, tokens = self._windows.get((bucket.key, window_of(now)), (0, 0))
            leases = sum(1 for t in self._leases.get(bucket.key, {}).values() if t > now)
        return requests, tokens, leases
