"""A planned pair's batch in a narrow table of its own

Planning set `documents.batch_id` on every pair it batched: an UPDATE that rewrote each of a job's
document rows (text included) and put an entry in each of its indexes, before the job's first batch
could run, and left as many dead rows for vacuum. A `batch_documents` row (batch, document) is
written once, into one index; a pair the score cache answered still has none.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 18:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLANNED = sa.text("batch_id IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "batch_documents",
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "document_id"),
    )
    op.execute(
        "INSERT INTO batch_documents (batch_id, document_id)"
        " SELECT batch_id, id FROM documents WHERE batch_id IS NOT NULL"
    )
    op.drop_index("ix_documents_batch_id", table_name="documents")
    with op.batch_alter_table("documents") as batch_op:
        batch_op.drop_column("batch_id")


def downgrade() -> None:
    with op.batch_alter_table("documents") as batch_op:
        batch_op.add_column(sa.Column("batch_id", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE documents SET batch_id = planned.batch_id"
        " FROM batch_documents AS planned WHERE planned.document_id = documents.id"
    )
    op.create_index(
        "ix_documents_batch_id", "documents", ["batch_id"], sqlite_where=PLANNED, postgresql_where=PLANNED
    )
    op.drop_table("batch_documents")
