"""collections, priorities, windowed batches

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 07:00:30.271316
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("documents", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "collection_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("collection_id", sa.String(length=32), nullable=False),
        sa.Column("client_id", sa.String(length=255), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["collections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("collection_id", "client_id"),
    )
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("number", sa.Integer(), server_default="0", nullable=False))
        batch_op.drop_index(batch_op.f("ix_batches_job_id"))
        batch_op.create_index("ix_batches_job_status", ["job_id", "status", "number"], unique=False)

    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_id", sa.Integer(), nullable=True))
        batch_op.alter_column("text", existing_type=sa.TEXT(), nullable=True)
        batch_op.create_index(batch_op.f("ix_documents_source_id"), ["source_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_documents_source_id", "collection_documents", ["source_id"], ["id"], ondelete="RESTRICT"
        )

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("priority", sa.String(length=8), server_default="normal", nullable=False)
        )
        batch_op.add_column(sa.Column("collection_id", sa.String(length=32), nullable=True))
        batch_op.create_foreign_key(
            "fk_jobs_collection_id", "collections", ["collection_id"], ["id"], ondelete="RESTRICT"
        )

    with op.batch_alter_table("queries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("document_ids", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("queries", schema=None) as batch_op:
        batch_op.drop_column("document_ids")

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint("fk_jobs_collection_id", type_="foreignkey")
        batch_op.drop_column("collection_id")
        batch_op.drop_column("priority")

    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.drop_constraint("fk_documents_source_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_documents_source_id"))
        batch_op.alter_column("text", existing_type=sa.TEXT(), nullable=False)
        batch_op.drop_column("source_id")

    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_index("ix_batches_job_status")
        batch_op.create_index(batch_op.f("ix_batches_job_id"), ["job_id"], unique=False)
        batch_op.drop_column("number")

    op.drop_table("collection_documents")
    op.drop_table("collections")
