"""libraries and their documents (chunks and vectors live in the library index: storage/library_index*.py)

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "libraries",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("workspace_id", sa.String(64), sa.ForeignKey("workspaces.id"), nullable=False, index=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("chunk_size", sa.Integer, nullable=False),
        sa.Column("owner_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False, index=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "library_documents",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("library_id", sa.String(36), sa.ForeignKey("libraries.id"), nullable=False, index=True),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("mime_type", sa.String(128), nullable=True),
        sa.Column("extension", sa.String(32), nullable=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("blob_key", sa.String(64), nullable=False),
        sa.Column("text_key", sa.String(64), nullable=True),
        sa.Column("process_status", sa.String(32), nullable=False),
        sa.Column("status_reason", sa.Text, nullable=True),
        sa.Column("number_of_pages", sa.Integer, nullable=True),
        sa.Column("tokens", sa.BigInteger, nullable=False),
        sa.Column("chunks", sa.Integer, nullable=False),
        sa.Column("uploaded_by_id", sa.String(64), nullable=True),
        sa.Column("attributes", sa.JSON, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False, index=True),
        sa.Column("last_processed_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_library_documents_library_hash", "library_documents", ["library_id", "sha256"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_library_documents_library_hash", "library_documents")
    op.drop_table("library_documents")
    op.drop_table("libraries")
