"""Rate-limit counters: the ``RateLimiter`` protocol and its database implementation.

A bucket is one key (``token:<id>`` or ``workspace:<name>``) with its budgets. Requests and tokens are counted in
fixed one-minute windows (``rate_windows``: key, window start, requests, tokens), each bumped with one atomic upsert,
so every process and replica sharing the database sees the same counts. A request in flight under a concurrency
limit holds a lease row (``rate_leases``) with an expiry, renewed while it runs: a crashed process's leases lapse on
their own. ``admit`` runs in one transaction and the first statement of that transaction is the upsert, which takes
the write lock (SQLite) or the window row's lock (PostgreSQL): admissions for a key are serialised, and a refused
request rolls back, so it counts nowhere. Other backends (Redis) implement the same protocol.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.tables import RateLease, RateWindow

__all__ = ["LEASE_SECONDS", "WINDOW_SECONDS", "Bucket", "DatabaseLimiter", "LimiterUnavailable", "RateLimiter",
           "Refusal", "over_rate", "window_of"]

WINDOW_SECONDS = 60
LEASE_SECONDS = 60.0  # a lease not renewed for this long is gone (its process died)
CONCURRENCY_RETRY = 1.0  # seconds a request refused for concurrency is told to wait


@dataclass(frozen=True, slots=True)
class Bucket:
    scope: str  # "token" or "workspace"
    name: str  # the token id or the workspace name
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_requests: int | None = None

    @property
    def key(self) -> str:
        return f"{self.scope}:{self.name}"


@dataclass(frozen=True, slots=True)
class Refusal:
    bucket: Bucket
    limit: str  # "requests_per_minute", "tokens_per_minute" or "concurrent_requests"
    retry_after: float  # seconds


class LimiterUnavailable(Exception):
    """The limiter's store cannot be reached (Redis down): the caller fails closed or open, by configuration."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimiter(Protocol):
    """Blocking calls: run them in a worker thread. ``now`` is unix time, passed in so tests move windows.
    A store that cannot be reached raises ``LimiterUnavailable``."""

    def admit(self, buckets: Sequence[Bucket], lease: str | None, now: float) -> Refusal | None:
        """Count one request in every bucket and take ``lease`` in those limiting concurrency, all or nothing."""
        ...

    def settle(self, buckets: Sequence[Bucket], lease: str | None, tokens: int, now: float) -> None:
        """Add a finished request's tokens to the current window and give its lease back."""
        ...

    def renew(self, leases: Collection[str], now: float) -> None:
        """Keep leases of requests still running alive for another ``LEASE_SECONDS``."""
        ...

    def close(self) -> None: ...


MAX_SETTLED_TOKENS = 2**40  # per request: far past any model, far below int64 when a minute's requests add up


def window_of(now: float) -> int:
    return int(now // WINDOW_SECONDS) * WINDOW_SECONDS


def over_rate(bucket: Bucket, requests: int, tokens: int, now: float) -> Refusal | None:
    """``requests`` counts this one; TPM refuses once the window's tokens have reached the budget."""
    retry = window_of(now) + WINDOW_SECONDS - now
    if bucket.requests_per_minute is not None and requests > bucket.requests_per_minute:
        return Refusal(bucket, "requests_per_minute", retry)
    if bucket.tokens_per_minute is not None and tokens >= bucket.tokens_per_minute:
        return Refusal(bucket, "tokens_per_minute", retry)
    return None


class _Refused(Exception):  # control flow: rolls the admission transaction back
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.limit)
        self.refusal = refusal


class DatabaseLimiter:
    def __init__(self, db: Database, *, lease_seconds: float = LEASE_SECONDS) -> None:
        self._db = db
        self.lease_seconds = lease_seconds
        name = db.engine.dialect.name
        self._insert = sqlite.insert if name == "sqlite" else postgresql.insert if name == "postgresql" else None

    def admit(self, buckets: Sequence[Bucket], lease: str | None, now: float) -> Refusal | None:
        window = window_of(now)
        try:
            with self._db.session() as s:
                for bucket in buckets:
                    requests, tokens = self._bump(s, bucket.key, window, 1, 0)
                    if requests == 1:  # first request of a new window: the key's older windows are done with
                        s.execute(delete(RateWindow).where(RateWindow.key == bucket.key,
                                                           RateWindow.window_start < window))
                    refusal = over_rate(bucket, requests, tokens, now)
                    if refusal is None and bucket.concurrent_requests is not None:
                        refusal = self._lease(s, bucket, lease, now)
                    if refusal is not None:
                        raise _Refused(refusal)
        except _Refused as refused:
            return refused.refusal
        return None

    def settle(self, buckets: Sequence[Bucket], lease: str | None, tokens: int, now: float) -> None:
        # An upstream's absurd token count must not overflow the window's INTEGER (and keep the lease held).
        tokens = min(tokens, MAX_SETTLED_TOKENS)
        counted = [b for b in buckets if b.tokens_per_minute is not None] if tokens > 0 else []
        if not counted and lease is None:
            return
        window = window_of(now)
        with self._db.session() as s:
            for bucket in counted:
                self._bump(s, bucket.key, window, 0, tokens)
            if lease is not None:
                s.execute(delete(RateLease).where(RateLease.id == lease))

    def renew(self, leases: Collection[str], now: float) -> None:
        if not leases:
            return
        with self._db.session() as s:
            s.execute(update(RateLease).where(RateLease.id.in_(list(leases)))
                      .values(expires_at=now + self.lease_seconds))

    def close(self) -> None:
        pass  # the database belongs to the caller

    def counts(self, bucket: Bucket, now: float) -> tuple[int, int, int]:
        """(requests, tokens) in the current window and live leases: for tests and diagnostics."""
        with self._db.session() as s:
            row = s.execute(select(RateWindow.requests, RateWindow.tokens).where(
                RateWindow.key == bucket.key, RateWindow.window_start == window_of(now))).first()
            leases = s.scalar(select(func.count()).select_from(RateLease).where(
                RateLease.key == bucket.key, RateLease.expires_at > now)) or 0
        return (row[0], row[1], leases) if row else (0, 0, leases)

    def _lease(self, s: Session, bucket: Bucket, lease: str | None, now: float) -> Refusal | None:
        assert lease is not None, "a concurrency-limited bucket needs a lease id"
        s.execute(delete(RateLease).where(RateLease.key == bucket.key, RateLease.expires_at <= now))
        held = s.scalar(select(func.count()).select_from(RateLease).where(RateLease.key == bucket.key)) or 0
        if held >= (bucket.concurrent_requests or 0):
            return Refusal(bucket, "concurrent_requests", CONCURRENCY_RETRY)
        s.add(RateLease(key=bucket.key, id=lease, expires_at=now + self.lease_seconds))
        s.flush()
        return None

    def _bump(self, s: Session, key: str, window: int, requests: int, tokens: int) -> tuple[int, int]:
        """Add to the window's counters atomically; returns them as they are now."""
        if self._insert is not None:
            stmt = self._insert(RateWindow).values(key=key, window_start=window, requests=requests, tokens=tokens)
            stmt = stmt.on_conflict_do_update(
                index_elements=[RateWindow.key, RateWindow.window_start],
                set_={"requests": RateWindow.requests + stmt.excluded.requests,
                      "tokens": RateWindow.tokens + stmt.excluded.tokens},
            ).returning(RateWindow.requests, RateWindow.tokens)
            row = s.execute(stmt).one()
            return int(row[0]), int(row[1])
        return self._bump_portable(s, key, window, requests, tokens)

    def _bump_portable(self, s: Session, key: str, window: int, requests: int, tokens: int) -> tuple[int, int]:
        """Any other database: UPDATE, else INSERT in a savepoint; a concurrent INSERT that won makes us UPDATE."""
        where = (RateWindow.key == key, RateWindow.window_start == window)
        bump = update(RateWindow).where(*where).values(requests=RateWindow.requests + requests,
                                                       tokens=RateWindow.tokens + tokens)
        if s.execute(bump).rowcount == 0:
            try:
                with s.begin_nested():
                    s.add(RateWindow(key=key, window_start=window, requests=requests, tokens=tokens))
            except IntegrityError:
                s.execute(bump)
        row = s.execute(select(RateWindow.requests, RateWindow.tokens).where(*where)).one()
        return int(row[0]), int(row[1])
