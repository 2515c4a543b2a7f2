"""64-bit counts and limits: PostgreSQL's INTEGER is 32-bit, SQLite's already holds 64 bits

Usage token counts (an upstream may report anything) and the token limits the API accepts (up to 10**12) overflowed
PostgreSQL's INTEGER.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = (("usage_records", "prompt_tokens"), ("usage_records", "completion_tokens"),
           ("api_tokens", "requests_per_minute"), ("api_tokens", "concurrent_requests"))
NULLABLE = {"requests_per_minute", "concurrent_requests"}


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return  # same storage either way; a batch ALTER would copy whole tables for nothing
    for table, name in COLUMNS:
        op.alter_column(table, name, type_=sa.BigInteger, existing_type=sa.Integer,
                        existing_nullable=name in NULLABLE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, name in COLUMNS:
        op.alter_column(table, name, type_=sa.Integer, existing_type=sa.BigInteger,
                        existing_nullable=name in NULLABLE)
