"""Creating, listing, revoking and verifying API tokens, with a small verified-token cache."""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mistral_gateway.echo import shorten
from mistral_gateway.errors import BadRequest, NotFound, Unauthorized
from mistral_gateway.protocol.admin import MAX_EXPIRES_IN, MAX_LIMIT_VALUE
from mistral_gateway.security.tokens import generate_token, hash_token, hashes_match, looks_like_token
from mistral_gateway.storage.epoch import Epoch
from mistral_gateway.storage.records import TokenRecord
from mistral_gateway.storage.tokens import TokenRepository

__all__ = ["Principal", "TokenService", "describe_token"]


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: str
    workspace_id: str
    workspace: str
    scopes: frozenset[str]
    expires_at: int | None
    requests_per_minute: int | None = None  # the token's own limits; None: the configured default
    tokens_per_minute: int | None = None
    concurrent_requests: int | None = None

    def allows(self, scope: str) -> bool:
        return "*" in self.scopes or scope in self.scopes


def describe_token(record: TokenRecord, now: float) -> dict[str, Any]:
    """A token as listings show it (CLI and admin API): never its hash, only a prefix to recognise it."""
    state = ("revoked" if record.revoked_at else
             "expired" if record.expires_at and record.expires_at <= now else "active")
    return {"id": record.id, "name": record.name, "workspace": record.workspace_name, "prefix": record.prefix + "…",
            "scopes": list(record.scopes), "created_at": record.created_at, "expires_at": record.expires_at,
            "revoked_at": record.revoked_at, "state": state, "requests_per_minute": record.requests_per_minute,
            "tokens_per_minute": record.tokens_per_minute, "concurrent_requests": record.concurrent_requests}


class TokenService:
    def __init__(
        self,
        repo: TokenRepository,
        epoch: Epoch,
        *,
        valid_scopes: tuple[str, ...],
        cache_size: int = 10_000,
        cache_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._repo = repo
        self._epoch = epoch
        self._valid_scopes = frozenset(valid_scopes) | {"*", "admin"}
        self._clock = clock
        # hash -> (principal, cached at). The epoch makes revocation on this node immediate; the TTL bounds how
        # long a replica sharing only the database may keep honouring a token revoked elsewhere.
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_seconds = cache_seconds
        self._cache_epoch = epoch.current()
        self._lock = threading.Lock()

    def create(
        self, name: str, *, workspace: str = "default", scopes: list[str] | None = None,
        expires_in: int | None = None, requests_per_minute: int | None = None, tokens_per_minute: int | None = None,
        concurrent_requests: int | None = None,
    ) -> tuple[str, TokenRecord]:
        scopes = list(dict.fromkeys(scopes or ["*"]))
        unknown = [s for s in scopes if s not in self._valid_scopes]
        if unknown:
            shown = [shorten(s) for s in unknown[:5]]  # echo a few, briefly
            raise BadRequest(f"unknown scope(s) {shown}; valid: {sorted(self._valid_scopes)}", param="scope")
        if not name.strip():
            raise BadRequest("token name must not be empty", param="name")
        if expires_in is not None and not 0 < expires_in <= MAX_EXPIRES_IN:
            raise BadRequest(f"expires_in must be between 1 and {MAX_EXPIRES_IN} seconds", param="expires_in")
        limits = {"requests_per_minute": requests_per_minute, "tokens_per_minute": tokens_per_minute,
                  "concurrent_requests": concurrent_requests}
        for param, value in limits.items():
            if value is not None and not 0 < value <= MAX_LIMIT_VALUE:
                raise BadRequest(f"{param} must be an integer between 1 and {MAX_LIMIT_VALUE} (omit it for the "
                                 "default)", param=param)
        now = int(self._clock())
        token = generate_token()
        ws = self._repo.ensure_workspace(workspace, now)
        record = self._repo.add(
            token_id="tok_" + uuid.uuid4().hex[:20],
            name=name,
            workspace=ws,
            token_hash=hash_token(token),
            prefix=token[:10],
            scopes=scopes,
            created_at=now,
            expires_at=now + expires_in if expires_in else None,
            **limits,
        )
        return token, record

    def list(self) -> list[TokenRecord]:
        return self._repo.list()

    def revoke(self, token_id: str) -> None:
        if not self._repo.revoke(token_id, int(self._clock())):
            raise NotFound(f"token {shorten(token_id)!r} not found", code="TOKEN_NOT_FOUND")
        self._epoch.bump()
        with self._lock:
            self._cache.clear()

    def count(self) -> int:
        return self._repo.count()

    def principal(self, token_id: str) -> Principal:
        """The principal of a token by id, for work it had accepted (a batch): revocation or expiry since does not
        stop that work, which keeps the token's scopes, limits and usage. Blocking."""
        record = self._repo.by_id(token_id)
        if record is None:
            raise NotFound(f"token {shorten(token_id)!r} not found", code="TOKEN_NOT_FOUND")
        return _principal(record)

    def verify_cached(self, token: str) -> Principal | None:
        """The event-loop-safe fast path: a cache hit, or None (then call ``verify`` in a thread)."""
        epoch = self._epoch.current()
        if epoch != self._cache_epoch:
            with self._lock:
                self._cache.clear()
                self._cache_epoch = epoch
        hit = self._cache.get(hash_token(token))
        if hit is None or self._clock() - hit[1] > self._cache_seconds:
            return None
        principal = hit[0]
        if principal.expires_at is not None and principal.expires_at <= self._clock():
            raise Unauthorized("API token expired", code="TOKEN_EXPIRED")
        return principal

    def verify(self, token: str) -> Principal:
        """Check a presented token against the database. Raises Unauthorized. Blocking: run in a thread."""
        if not looks_like_token(token):
            raise Unauthorized("invalid API token", code="INVALID_TOKEN")
        computed = hash_token(token)
        epoch_before = self._epoch.current()
        record = self._repo.by_hash(computed)
        if record is None or not hashes_match(record.token_hash, computed):
            raise Unauthorized("invalid API token", code="INVALID_TOKEN")
        if record.revoked_at is not None:
            raise Unauthorized("API token revoked", code="TOKEN_REVOKED")
        if record.expires_at is not None and record.expires_at <= self._clock():
            raise Unauthorized("API token expired", code="TOKEN_EXPIRED")
        principal = _principal(record)
        with self._lock:
            # Cache only if no revocation landed while we read: otherwise a stale row could be cached.
            if epoch_before == self._epoch.current() == self._cache_epoch:
                self._cache[computed] = (principal, self._clock())
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return principal


def _principal(record: TokenRecord) -> Principal:
    return Principal(record.id, record.workspace_id, record.workspace_name, frozenset(record.scopes),
                     record.expires_at, record.requests_per_minute, record.tokens_per_minute,
                     record.concurrent_requests)
