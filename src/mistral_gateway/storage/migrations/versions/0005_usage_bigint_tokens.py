"""usage token counts as BIGINT: PostgreSQL's INTEGER is 32-bit, SQLite's already holds 64 bits

Revision ID: 0005
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = ("prompt_tokens", "completion_tokens")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return  # same storage either way; a batch ALTER would copy the whole usage table for nothing
    for name in COLUMNS:
        op.alter_column("usage_records", name, type_=sa.BigInteger, existing_type=sa.Integer, existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for name in COLUMNS:
        op.alter_column("usage_records", name, type_=sa.Integer, existing_type=sa.BigInteger, existing_nullable=False)
