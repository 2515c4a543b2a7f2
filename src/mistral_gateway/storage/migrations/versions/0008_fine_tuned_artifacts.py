"""fine-tuned models: their job type and the file that serves them

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fine_tuned_models") as batch:
        batch.add_column(sa.Column("job_type", sa.String(16), nullable=False, server_default="completion"))
        batch.add_column(sa.Column("artifact", sa.String(1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fine_tuned_models") as batch:
        batch.drop_column("artifact")
        batch.drop_column("job_type")
