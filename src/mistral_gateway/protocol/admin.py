"""Admin API models (not part of Mistral's API): token creation and the usage query."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mistral_gateway.protocol.common import RequestModel

__all__ = ["USAGE_GROUPS", "TokenCreateIn", "UsageQuery"]

USAGE_GROUPS = ("token", "model", "operation", "workspace", "backend")
UsageGroup = Literal["token", "model", "operation", "workspace", "backend"]


class TokenCreateIn(RequestModel):
    name: str = Field(min_length=1, max_length=128)
    workspace: str = Field("default", min_length=1, max_length=128)
    scopes: list[str] | None = None  # default: ["*"]
    expires_in: int | None = Field(None, gt=0)  # seconds
    requests_per_minute: int | None = Field(None, gt=0)  # None: the configured default_token_limits
    tokens_per_minute: int | None = Field(None, gt=0)
    concurrent_requests: int | None = Field(None, gt=0)


class UsageQuery(RequestModel):
    since: str | None = None  # unix seconds, ISO date/date-time, or a span back from now (24h, 7d)
    until: str | None = None
    by: UsageGroup | None = None  # aggregate by this column; without it: the records, newest first
    limit: int = Field(100, ge=1, le=1000)
    page: int = Field(0, ge=0)
