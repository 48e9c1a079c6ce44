"""Reruns, schedules and their runs, relevance judgements

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-26 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rerun_of", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_jobs_rerun_of", ["rerun_of"])
        batch_op.create_foreign_key("fk_jobs_rerun_of", "jobs", ["rerun_of"], ["id"], ondelete="SET NULL")
    op.create_table(
        "judgements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("query_client_id", sa.String(length=255), nullable=False),
        sa.Column("document_client_id", sa.String(length=255), nullable=False),
        sa.Column("relevance", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "query_client_id", "document_client_id"),
    )
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("cron", sa.String(length=255), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_schedules_job_id", "schedules", ["job_id"])
    op.create_index("ix_schedules_next_due_at", "schedules", ["next_due_at"])
    op.create_index("ix_schedules_tenant", "schedules", ["tenant"])
    op.create_table(
        "schedule_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.String(length=32), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["schedule_id"], ["schedules.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("schedule_id", "due_at"),
    )
    op.create_index("ix_schedule_runs_job_id", "schedule_runs", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_schedule_runs_job_id", table_name="schedule_runs")
    op.drop_table("schedule_runs")
    op.drop_index("ix_schedules_tenant", table_name="schedules")
    op.drop_index("ix_schedules_next_due_at", table_name="schedules")
    op.drop_index("ix_schedules_job_id", table_name="schedules")
    op.drop_table("schedules")
    op.drop_table("judgements")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint("fk_jobs_rerun_of", type_="foreignkey")
        batch_op.drop_index("ix_jobs_rerun_of")
        batch_op.drop_column("rerun_of")
