"""rate limits and usage: per-token limit columns, rate windows, concurrency leases, usage records

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LIMIT_COLUMNS = (("requests_per_minute", sa.Integer), ("tokens_per_minute", sa.BigInteger),
                 ("concurrent_requests", sa.Integer))


def upgrade() -> None:
    for name, kind in LIMIT_COLUMNS:
        op.add_column("api_tokens", sa.Column(name, kind, nullable=True))
    op.create_table(
        "rate_windows",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("window_start", sa.BigInteger, primary_key=True),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "rate_leases",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_table(
        "usage_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.BigInteger, nullable=False, index=True),
        sa.Column("token_id", sa.String(64), nullable=False),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("workspace", sa.String(128), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("model", sa.String(255), nullable=True),
        sa.Column("backend", sa.String(64), nullable=False),
        sa.Column("dialect", sa.String(16), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in ("usage_records", "rate_leases", "rate_windows"):
        op.drop_table(table)
    with op.batch_alter_table("api_tokens") as batch:
        for name, _ in LIMIT_COLUMNS:
            batch.drop_column(name)
