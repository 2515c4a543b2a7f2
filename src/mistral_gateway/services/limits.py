"""Rate limits per token and per workspace: requests and tokens per minute, concurrent requests.

``LimitService`` turns a principal into the buckets that apply to it and asks a ``RateLimiter`` (storage.limits)
to admit and settle its requests. A token's own limits win field by field over ``Settings.default_token_limits``;
a workspace's limits come from ``Settings.workspaces`` by name and are shared by all its tokens. A principal with
no limit anywhere gets no bucket, and then nothing is stored or asked at all (the hot path stays off the database).

TPM: a request is refused once its window's recorded tokens have reached the budget; a request's own tokens are
known only when it ends, and are counted then (``settle``). Leases of requests still running are renewed by one
background thread, so the leases of a process that died lapse after ``LEASE_SECONDS``.

When the limiter's store is unreachable (Redis down: ``LimiterUnavailable``), a limited request is refused with 503
``LIMITS_UNAVAILABLE`` and ``Retry-After`` (``fail_open`` False, the default) or admitted uncounted (True); either
way the outage is logged once, not per request, and its end once more.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from anyio.to_thread import run_sync

from mistral_gateway.background import BackgroundThread
from mistral_gateway.config import LimitPolicy, Settings, WorkspacePolicy
from mistral_gateway.errors import RateLimited, ServiceUnavailable
from mistral_gateway.services.tokens import Principal
from mistral_gateway.storage.db import Database
from mistral_gateway.storage.limits import (
    LEASE_SECONDS,
    Bucket,
    DatabaseLimiter,
    LimiterUnavailable,
    RateLimiter,
    Refusal,
)
from mistral_gateway.storage.redis_conn import RedisLink

__all__ = ["LimitService", "Ticket", "make_limiter", "rate_limited"]

log = logging.getLogger("mistral_gateway.limits")

_WHAT = {"requests_per_minute": "requests per minute", "tokens_per_minute": "tokens per minute (prompt + completion)",
         "concurrent_requests": "concurrent requests"}


@dataclass(frozen=True, slots=True)
class Ticket:
    """An admitted request: the buckets it counts in, and its lease when one of them limits concurrency."""

    buckets: tuple[Bucket, ...]
    lease: str | None


def make_limiter(settings: Settings, db: Database, redis: RedisLink | None = None) -> RateLimiter:
    """The limiter the settings ask for: with ``redis`` (built when ``redis_url`` is set) the counters live there;
    otherwise the database does, which replicas sharing one database share too."""
    if redis is not None:
        from mistral_gateway.storage.limits_redis import RedisLimiter

        return RedisLimiter(redis.client, prefix=settings.redis_key_prefix, breaker=redis.breaker)
    return DatabaseLimiter(db)


def rate_limited(refusal: Refusal) -> RateLimited:
    bucket = refusal.bucket
    who = f"token {bucket.name}" if bucket.scope == "token" else f"workspace {bucket.name!r}"
    retry = max(1, math.ceil(refusal.retry_after))
    return RateLimited(f"rate limit exceeded: {who} allows {getattr(bucket, refusal.limit)} "
                       f"{_WHAT[refusal.limit]}; retry after {retry} s", retry_after=retry,
                       code="RATE_LIMIT_EXCEEDED")


def _bucket(scope: str, name: str, policy: LimitPolicy) -> Bucket | None:
    if policy.requests_per_minute is None and policy.tokens_per_minute is None and policy.concurrent_requests is None:
        return None
    return Bucket(scope, name, policy.requests_per_minute, policy.tokens_per_minute, policy.concurrent_requests)


class LimitService:
    def __init__(self, limiter: RateLimiter, *, workspaces: Sequence[WorkspacePolicy] = (),
                 default: LimitPolicy | None = None, clock: Callable[[], float] = time.time,
                 lease_seconds: float = LEASE_SECONDS, fail_open: bool = False) -> None:
        self.limiter = limiter
        self.fail_open = fail_open
        self._outage = False  # set while the limiter's store is unreachable: logged once, at its start and end
        self._workspaces = {w.name: b for w in workspaces if (b := _bucket("workspace", w.name, w)) is not None}
        default = default or LimitPolicy()
        self._default = (default.requests_per_minute, default.tokens_per_minute, default.concurrent_requests)
        self._clock = clock
        self._lease_seconds = lease_seconds
        self._held: set[str] = set()  # leases of requests running in this process
        self._lock = threading.Lock()
        self._renewer = BackgroundThread(self._renew_loop, "lease-renewer")

    def buckets(self, principal: Principal) -> tuple[Bucket, ...]:
        rpm, tpm, concurrency = principal.requests_per_minute, principal.tokens_per_minute, \
            principal.concurrent_requests
        d_rpm, d_tpm, d_concurrency = self._default
        rpm = d_rpm if rpm is None else rpm
        tpm = d_tpm if tpm is None else tpm
        concurrency = d_concurrency if concurrency is None else concurrency
        workspace = self._workspaces.get(principal.workspace)
        if rpm is None and tpm is None and concurrency is None:
            return () if workspace is None else (workspace,)
        token = Bucket("token", principal.token_id, rpm, tpm, concurrency)
        return (token,) if workspace is None else (token, workspace)

    async def admit(self, principal: Principal) -> Ticket | None:
        """None for an unlimited principal (nothing stored); raises RateLimited over any limit."""
        buckets = self.buckets(principal)
        if not buckets:
            return None
        lease = uuid.uuid4().hex if any(b.concurrent_requests is not None for b in buckets) else None
        try:
            refusal = await run_sync(self.limiter.admit, buckets, lease, self._clock())
        except LimiterUnavailable as exc:
            self._unavailable(exc)
            if self.fail_open:
                return None  # admitted uncounted: no ticket, nothing to settle
            raise ServiceUnavailable("rate limits cannot be checked right now (their store is unreachable)",
                                     retry_after=exc.retry_after, code="LIMITS_UNAVAILABLE") from None
        self._available()
        if refusal is not None:
            raise rate_limited(refusal)
        if lease is not None:
            self._hold(lease)
        return Ticket(buckets, lease)

    async def settle(self, ticket: Ticket, tokens: int) -> None:
        """The request is over: count its tokens (where TPM applies) and give its lease back."""
        if ticket.lease is not None:
            with self._lock:
                self._held.discard(ticket.lease)
        if tokens <= 0 or not any(b.tokens_per_minute is not None for b in ticket.buckets):
            tokens = 0
            if ticket.lease is None:
                return
        try:
            await run_sync(self.limiter.settle, ticket.buckets, ticket.lease, tokens, self._clock())
        except LimiterUnavailable as exc:  # the answer is sent: its tokens go uncounted, its lease lapses
            self._unavailable(exc)

    def renew_held(self) -> int:
        """Extend the leases of this process's running requests (the renewer thread calls this)."""
        with self._lock:
            held = list(self._held)
        if held:
            self.limiter.renew(held, self._clock())
        return len(held)

    def start(self) -> None:
        """Start the lease renewer (the service container's lifecycle calls this once; idempotent)."""
        self._renewer.start()

    def stop(self) -> None:
        self._renewer.stop()

    def close(self) -> None:
        self.stop()
        self.limiter.close()

    def _hold(self, lease: str) -> None:
        with self._lock:
            self._held.add(lease)

    def _renew_loop(self) -> None:
        while not self._renewer.stopping.wait(self._lease_seconds / 3):
            try:
                self.renew_held()
            except LimiterUnavailable as exc:
                self._unavailable(exc)
            except Exception:
                log.exception("renewing concurrency leases failed")

    def _unavailable(self, exc: LimiterUnavailable) -> None:
        if not self._outage:
            self._outage = True
            log.error("rate limits unavailable: %s; limited requests are %s until it is back", exc,
                      "admitted uncounted" if self.fail_open else "refused with 503 LIMITS_UNAVAILABLE")

    def _available(self) -> None:
        if self._outage:
            self._outage = False
            log.warning("rate limits available again")
