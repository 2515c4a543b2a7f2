"""Admin API models (not part of Mistral's API): token creation and the usage query."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mistral_gateway.protocol.common import RequestModel

__all__ = [
    "MAX_EXPIRES_IN",
    "MAX_LIMIT_VALUE",
    "MAX_USAGE_LIMIT",
    "MAX_USAGE_PAGE",
    "USAGE_GROUPS",
    "TokenCreateIn",
    "UsageQuery",
]

USAGE_GROUPS = ("token", "model", "operation", "workspace", "backend")
UsageGroup = Literal["token", "model", "operation", "workspace", "backend"]
# Every integer has a range: unbounded ones reached SQLite as OverflowError (a 500).
MAX_EXPIRES_IN = 100 * 365 * 86400  # seconds: a century is "never" for a token
MAX_LIMIT_VALUE = 10**12  # per-minute budgets and concurrency: far above anything enforceable
MAX_USAGE_LIMIT = 1000
MAX_USAGE_PAGE = 10**6  # x MAX_USAGE_LIMIT: an OFFSET SQLite holds


class TokenCreateIn(RequestModel):
    name: str = Field(min_length=1, max_length=128)
    workspace: str = Field("default", min_length=1, max_length=128)
    scopes: list[str] | None = Field(None, max_length=64)  # default: ["*"]
    expires_in: int | None = Field(None, gt=0, le=MAX_EXPIRES_IN)  # seconds
    # None: the configured default_token_limits
    requests_per_minute: int | None = Field(None, gt=0, le=MAX_LIMIT_VALUE)
    tokens_per_minute: int | None = Field(None, gt=0, le=MAX_LIMIT_VALUE)
    concurrent_requests: int | None = Field(None, gt=0, le=MAX_LIMIT_VALUE)


class UsageQuery(RequestModel):
    since: str | None = Field(None, max_length=64)  # unix seconds, ISO date/date-time, or a span back (24h, 7d)
    until: str | None = Field(None, max_length=64)
    by: UsageGroup | None = None  # aggregate by this column; without it: the records, newest first
    limit: int = Field(100, ge=1, le=MAX_USAGE_LIMIT)
    page: int = Field(0, ge=0, le=MAX_USAGE_PAGE)
