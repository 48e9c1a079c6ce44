"""synchronous jobs, webhook deliveries, batch queue times

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 13:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("synchronous", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("webhook_attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("webhook_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("webhook_delivered_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_column("queued_at")

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("webhook_delivered_at")
        batch_op.drop_column("webhook_error")
        batch_op.drop_column("webhook_attempts")
        batch_op.drop_column("synchronous")
