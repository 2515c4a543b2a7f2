"""batch jobs

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batch_jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("workspace_id", sa.String(64), sa.ForeignKey("workspaces.id"), nullable=False, index=True),
        sa.Column("token_id", sa.String(64), nullable=True),
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("model", sa.String(255), nullable=True),
        sa.Column("agent_id", sa.String(255), nullable=True),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("input_files", sa.JSON, nullable=False),
        sa.Column("requests_blob", sa.String(128), nullable=True),
        sa.Column("status", sa.String(32), nullable=False, index=True),
        sa.Column("timeout_hours", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False, index=True),
        sa.Column("started_at", sa.BigInteger, nullable=True),
        sa.Column("completed_at", sa.BigInteger, nullable=True),
        sa.Column("total_requests", sa.Integer, nullable=False),
        sa.Column("completed_requests", sa.Integer, nullable=False),
        sa.Column("succeeded_requests", sa.Integer, nullable=False),
        sa.Column("failed_requests", sa.Integer, nullable=False),
        sa.Column("errors", sa.JSON, nullable=False),
        sa.Column("output_file", sa.String(36), nullable=True),
        sa.Column("error_file", sa.String(36), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("batch_jobs")
