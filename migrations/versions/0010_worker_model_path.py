"""Where a worker loaded its model from, beside the name it serves it under

Revision ID: 0010
Revises: 0006
Create Date: 2026-11-26 17:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model_path", sa.String(length=512), nullable=True))
        # every queue it listens on (one per name of its model), comma separated
        batch_op.alter_column("queue", type_=sa.String(length=1024), existing_type=sa.String(length=255))


def downgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.alter_column("queue", type_=sa.String(length=255), existing_type=sa.String(length=1024))
        batch_op.drop_column("model_path")
