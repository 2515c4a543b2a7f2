"""Plain records returned by repositories (never ORM objects, so nothing lazy-loads outside a session)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FileRecord", "FineTunedModelRecord", "TokenRecord", "WorkspaceRecord"]


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
