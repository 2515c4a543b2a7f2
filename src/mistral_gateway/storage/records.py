"""Plain records returned by repositories (never ORM objects, so nothing lazy-loads outside a session)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FileRecord", "FineTunedModelRecord", "TokenRecord", "UsageRecord", "UsageSummary", "UsageTuple",
           "WorkspaceRecord", "usage_row"]


@dataclass(frozen=True, slots=True)
class WorkspaceRecord:
    id: str
    name: str
    created_at: int


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    name: str
    workspace_id: str
    workspace_name: str
    token_hash: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    requests_per_minute: int | None = None  # the token's own limits (None: the configured default)
    tokens_per_minute: int | None = None
    concurrent_requests: int | None = None


@dataclass(frozen=True, slots=True)
class FileRecord:
    id: str
    workspace_id: str
    filename: str
    bytes: int
    created_at: int
    purpose: str
    sample_type: str
    source: str
    num_lines: int | None
    mimetype: str | None
    sha256: str
    blob_key: str
    expires_at: int | None
    visibility: str


@dataclass(frozen=True, slots=True)
class FineTunedModelRecord:
    id: str
    workspace_id: str
    root: str
    job_id: str
    name: str | None
    description: str | None
    archived: bool
    capabilities: tuple[str, ...]
    max_context_length: int
    created_at: int
    job_type: str = "completion"  # completion (a chat model: base GGUF + trained weights) or classifier (a head)
    # what serves it, relative to data_dir: a GGUF (completion) or a classifier-head file; None: nothing local
    artifact: str | None = None


@dataclass(slots=True)
class UsageRecord:
    """One request by an authenticated token: what it asked for, how it ended, what it used. Not frozen: one is
    built on every request, and a frozen dataclass's ``__init__`` costs three times as much."""

    created_at: int
    token_id: str
    workspace_id: str
    workspace: str
    operation: str
    model: str | None
    backend: str
    dialect: str
    status: int
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    id: int | None = None  # set once stored


UsageTuple = tuple[int, str, str, str, str, str | None, str, str, int, float, int, int]


def usage_row(record: UsageRecord) -> UsageTuple:
    """A record as the plain tuple the usage queue holds (``UsageRecord``'s fields in order, ``id`` left out).
    Tuples of plain values drop out of the garbage collector's tracking, so thousands queued per second do not make
    its full collections (latency spikes) more frequent, as objects would."""
    return (record.created_at, record.token_id, record.workspace_id, record.workspace, record.operation,
            record.model, record.backend, record.dialect, record.status, record.latency_ms, record.prompt_tokens,
            record.completion_tokens)


@dataclass(frozen=True, slots=True)
class UsageSummary:
    """Usage aggregated by one column (``key`` is that column's value)."""

    key: str | None
    requests: int
    errors: int  # status >= 400
    prompt_tokens: int
    completion_tokens: int
    mean_latency_ms: float
