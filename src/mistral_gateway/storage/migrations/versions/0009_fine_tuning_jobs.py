"""fine-tuning jobs, their events and checkpoints

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fine_tuning_jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("workspace_id", sa.String(64), sa.ForeignKey("workspaces.id"), nullable=False, index=True),
        sa.Column("token_id", sa.String(64), nullable=True),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("job_type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(32), nullable=False, index=True),
        sa.Column("auto_start", sa.Boolean, nullable=False),
        sa.Column("suffix", sa.String(18), nullable=True),
        sa.Column("hyperparameters", sa.JSON, nullable=False),
        sa.Column("training_files", sa.JSON, nullable=False),
        sa.Column("validation_files", sa.JSON, nullable=False),
        sa.Column("integrations", sa.JSON, nullable=False),
        sa.Column("wandb_project", sa.String(128), nullable=True),
        sa.Column("wandb_name", sa.String(128), nullable=True),
        sa.Column("classifier_targets", sa.JSON, nullable=True),
        sa.Column("invalid_sample_skip_percentage", sa.Float, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("fine_tuned_model", sa.String(255), nullable=True),
        sa.Column("trained_tokens", sa.BigInteger, nullable=True),
        sa.Column("runner_job_id", sa.String(36), nullable=True),
        sa.Column("trainer_pid", sa.Integer, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False, index=True),
        sa.Column("modified_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "fine_tuning_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("fine_tuning_jobs.id"), nullable=False, index=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("data", sa.JSON, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "fine_tuning_checkpoints",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("fine_tuning_jobs.id"), nullable=False),
        sa.Column("step_number", sa.Integer, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_fine_tuning_checkpoints_job_step", "fine_tuning_checkpoints", ["job_id", "step_number"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("ix_fine_tuning_checkpoints_job_step", "fine_tuning_checkpoints")
    op.drop_table("fine_tuning_checkpoints")
    op.drop_table("fine_tuning_events")
    op.drop_table("fine_tuning_jobs")
