"""Table definitions (SQLAlchemy 2 declarative). Alembic migrations under ``migrations/`` create them.

Portable SQL only: no SQLite-specific types or statements, so a PostgreSQL URL works unchanged.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AgentRow",
    "AgentVersionRow",
    "ApiToken",
    "Base",
    "BatchJobRow",
    "ConversationEntryRow",
    "ConversationRow",
    "FileRow",
    "FineTunedModelRow",
    "FineTuningCheckpointRow",
    "FineTuningEventRow",
    "FineTuningJobRow",
    "JobRow",
    "LibraryDocumentRow",
    "LibraryRow",
    "RateLease",
    "RateWindow",
    "UpstreamSecretRow",
    "UsageRow",
    "Workspace",
]


# BIGINT where a column was created INTEGER and widened later (migration 0005): SQLite's INTEGER already holds 64
# bits, so there the column keeps its declared type and no table is rebuilt.
_INT64 = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    pass


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex; the token itself is never stored
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, to recognise a token in listings
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The token's own limits; None: Settings.default_token_limits applies (field by field)
    # (64-bit: the API accepts up to 10**12; SQLite's INTEGER already is, migration 0005 widens PostgreSQL's)
    requests_per_minute: Mapped[int | None] = mapped_column(_INT64, nullable=True)
    tokens_per_minute: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    concurrent_requests: Mapped[int | None] = mapped_column(_INT64, nullable=True)


class FileRow(Base):
    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    filename: Mapped[str] = mapped_column(String(512))
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    sample_type: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(32))
    num_lines: Mapped[int | None] = mapped_column(Integer, nullable=True)
    mimetype: Mapped[str | None] = mapped_column(String(255), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    blob_key: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    visibility: Mapped[str] = mapped_column(String(16), default="workspace")


class FineTunedModelRow(Base):
    __tablename__ = "fine_tuned_models"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    root: Mapped[str] = mapped_column(String(255))
    job_id: Mapped[str] = mapped_column(String(36))
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    capabilities: Mapped[list[str]] = mapped_column(JSON)
    max_context_length: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[int] = mapped_column(BigInteger)
    job_type: Mapped[str] = mapped_column(String(16), default="completion", server_default="completion")
    artifact: Mapped[str | None] = mapped_column(String(1024), nullable=True)


class RateWindow(Base):
    """One fixed one-minute window of a rate-limit key (``token:<id>`` or ``workspace:<name>``)."""

    __tablename__ = "rate_windows"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # unix seconds, a multiple of 60
    requests: Mapped[int] = mapped_column(Integer)
    tokens: Mapped[int] = mapped_column(BigInteger)


class RateLease(Base):
    """One request in flight under a concurrency limit; renewed while it runs, so a crashed process's leases
    expire on their own."""

    __tablename__ = "rate_leases"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float)


class UsageRow(Base):
    __tablename__ = "usage_records"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)
    token_id: Mapped[str] = mapped_column(String(64))
    workspace_id: Mapped[str] = mapped_column(String(64))
    workspace: Mapped[str] = mapped_column(String(128))
    operation: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(255), nullable=True)
    backend: Mapped[str] = mapped_column(String(64))
    dialect: Mapped[str] = mapped_column(String(16))
    status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(_INT64)  # 64-bit: upstreams report any count
    completion_tokens: Mapped[int] = mapped_column(_INT64)


class UpstreamSecretRow(Base):
    """An upstream's API key, sealed with AES-GCM (``security.secretbox``); never stored or returned in clear."""

    __tablename__ = "upstream_secrets"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class JobRow(Base):
    """A durable background job (``storage/jobs.py``). A worker owns a RUNNING job while its lease lasts; every
    write of the owner names ``lease_id``, so a worker whose lease lapsed (and was taken over) changes nothing."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # queued, running, succeeded, failed, cancelled
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    checkpoint: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean)
    worker_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_id: Mapped[str | None] = mapped_column(String(36), nullable=True, unique=True)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)  # unix seconds; claims go oldest first
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[float] = mapped_column(Float)


class BatchJobRow(Base):
    """A batch job. Inline requests are stored as a JSONL blob (``requests_blob``), so files and inline requests
    execute the same way; results become files (``output_file``/``error_file``) when the job ends."""

    __tablename__ = "batch_jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    token_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # who created it (created_by_me)
    endpoint: Mapped[str] = mapped_column(String(128))
    model: Mapped[str | None] = mapped_column(String(255), nullable=True)
    agent_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON, nullable=True)
    input_files: Mapped[list[str]] = mapped_column(JSON)
    requests_blob: Mapped[str | None] = mapped_column(String(128), nullable=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    timeout_hours: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)
    started_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    completed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    total_requests: Mapped[int] = mapped_column(Integer)
    completed_requests: Mapped[int] = mapped_column(Integer, default=0)
    succeeded_requests: Mapped[int] = mapped_column(Integer, default=0)
    failed_requests: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[dict[str, object]]] = mapped_column(JSON)
    output_file: Mapped[str | None] = mapped_column(String(36), nullable=True)
    error_file: Mapped[str | None] = mapped_column(String(36), nullable=True)


# -- agents and conversations (issue 13) -------------------------------------------------------------------------
# Times are microseconds since the epoch (the API shows RFC 3339 with microseconds). A version's or an entry's whole
# API object is one JSON column: the spec's shapes are wide and nested, and nothing queries inside them except the
# listed filters, which have columns of their own.


class AgentRow(Base):
    """An agent's identity and active version. A delete marks ``deleted_at`` and keeps the versions, so the
    conversations that used the agent can still be read and continued."""

    __tablename__ = "agents"
    __table_args__ = (Index("ix_agents_workspace_created", "workspace_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # ag_ + 32 hex
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    name: Mapped[str] = mapped_column(String(512))  # the active version's, for the list filters
    source: Mapped[str] = mapped_column(String(32))
    deployment_chat: Mapped[bool] = mapped_column(Boolean)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)  # the active version's
    version: Mapped[int] = mapped_column(Integer)  # the active version
    latest_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    deleted_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AgentVersionRow(Base):
    __tablename__ = "agent_versions"

    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)  # model, name, instructions, tools, completion_args, ...
    created_at: Mapped[int] = mapped_column(BigInteger)


class ConversationRow(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_workspace_created", "workspace_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # conv_ + 32 hex
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    agent_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # no foreign key: agents may be deleted
    agent_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    model: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # instructions, tools, completion_args, guardrails of a model conversation; handoff_execution and the like
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    name: Mapped[str | None] = mapped_column(Text, nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class ConversationEntryRow(Base):
    __tablename__ = "conversation_entries"
    __table_args__ = (Index("ix_conversation_entries_seq", "conversation_id", "seq", unique=True),)

    id: Mapped[str] = mapped_column(String(48), primary_key=True)  # msg_, fc_, tool_exec_, handoff_ + 32 hex
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)  # append order, from 0
    type: Mapped[str] = mapped_column(String(32))  # message.input, message.output, function.call, ...
    body: Mapped[dict[str, Any]] = mapped_column(JSON)  # the entry as the API shows it
    created_at: Mapped[int] = mapped_column(BigInteger)


# -- fine-tuning jobs (issue 14) -----------------------------------------------------------------------------------
# Events and checkpoints are rows of their own, append-only: the job's handler and a /cancel request both add
# events, and an insert cannot lose another writer's update the way a read-modify-write of a JSON column can. A
# checkpoint is unique per (job, step), so a resumed run reporting a step again records it once.


class FineTuningJobRow(Base):
    __tablename__ = "fine_tuning_jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    token_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # who created it (created_by_me)
    model: Mapped[str] = mapped_column(String(255))
    job_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32), index=True)
    auto_start: Mapped[bool] = mapped_column(Boolean)
    suffix: Mapped[str | None] = mapped_column(String(18), nullable=True)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    training_files: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # [{file_id, weight}]
    validation_files: Mapped[list[str]] = mapped_column(JSON)
    integrations: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # without api keys
    wandb_project: Mapped[str | None] = mapped_column(String(128), nullable=True)  # the first integration's, to filter
    wandb_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    classifier_targets: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    invalid_sample_skip_percentage: Mapped[float] = mapped_column(Float)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)  # the estimate
    fine_tuned_model: Mapped[str | None] = mapped_column(String(255), nullable=True)
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    runner_job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)  # the durable job running it now
    trainer_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the training worker (a restart checks)
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)
    modified_at: Mapped[int] = mapped_column(BigInteger)


class FineTuningEventRow(Base):
    __tablename__ = "fine_tuning_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class FineTuningCheckpointRow(Base):
    __tablename__ = "fine_tuning_checkpoints"
    __table_args__ = (Index("ix_fine_tuning_checkpoints_job_step", "job_id", "step_number", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id"))
    step_number: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[int] = mapped_column(BigInteger)


class LibraryRow(Base):
    __tablename__ = "libraries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    chunk_size: Mapped[int] = mapped_column(Integer)
    owner_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the creating token's id
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)  # microseconds
    updated_at: Mapped[int] = mapped_column(BigInteger)


class LibraryDocumentRow(Base):
    __tablename__ = "library_documents"
    __table_args__ = (Index("ix_library_documents_library_hash", "library_id", "sha256", unique=True),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    library_id: Mapped[str] = mapped_column(ForeignKey("libraries.id"), index=True)
    workspace_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    mime_type: Mapped[str | None] = mapped_column(String(128), nullable=True)
    extension: Mapped[str | None] = mapped_column(String(32), nullable=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    blob_key: Mapped[str] = mapped_column(String(64))  # the uploaded bytes
    text_key: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the extracted text, once processed
    process_status: Mapped[str] = mapped_column(String(32))
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # why processing failed
    number_of_pages: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)  # embedding tokens of its chunks
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    uploaded_by_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # the user's, set by an update
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)
    last_processed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
