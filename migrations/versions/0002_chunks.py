"""Window results (chunks, best window span) and query truncation

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 19:54:18.171685
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("queries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("truncated", sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chunks", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("best_chunk", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("best_start", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("best_end", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("windows", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_column("windows")
        batch_op.drop_column("best_end")
        batch_op.drop_column("best_start")
        batch_op.drop_column("best_chunk")
        batch_op.drop_column("chunks")

    with op.batch_alter_table("queries", schema=None) as batch_op:
        batch_op.drop_column("truncated")
