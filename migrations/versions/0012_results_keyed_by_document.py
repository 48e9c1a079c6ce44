"""Results keyed by their document; the cache's truncated queries indexed

A result belongs to one document, which a unique index already kept: the serial `id` beside it was
a second unique index on every result row, written for each of a rerun's million results and read
by nothing. The cache's few truncated queries get an index of their own, as a plan asks for them
per query and would otherwise read every entry of the query.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 13:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite's unique constraint from 0001 is unnamed: batch mode names it by this convention
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
TRUNCATED = sa.text("query_truncated")


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _unique_name() -> str:
    return "results_document_id_key" if _postgres() else "uq_results_document_id"


def upgrade() -> None:
    with op.batch_alter_table("results", naming_convention=NAMING) as batch_op:
        batch_op.drop_constraint(_unique_name(), type_="unique")
        batch_op.drop_column("id")
        batch_op.create_primary_key("results_pkey", ["document_id"])
    op.create_index(
        "ix_score_cache_truncated",
        "score_cache",
        ["scoring_key", "query_hash"],
        sqlite_where=TRUNCATED,
        postgresql_where=TRUNCATED,
    )


def downgrade() -> None:
    op.drop_index("ix_score_cache_truncated", table_name="score_cache")
    if _postgres():  # a serial again, numbering the rows there are
        op.execute(
            "ALTER TABLE results DROP CONSTRAINT results_pkey, ADD COLUMN id SERIAL PRIMARY KEY,"
            " ADD CONSTRAINT results_document_id_key UNIQUE (document_id)"
        )
        return
    with op.batch_alter_table("results", naming_convention=NAMING) as batch_op:
        # SQLite numbers an INTEGER PRIMARY KEY left empty by the rebuild's copy itself
        batch_op.drop_constraint("results_pkey", type_="primary")
        batch_op.add_column(sa.Column("id", sa.Integer(), nullable=False))
        batch_op.create_primary_key("results_pkey", ["id"])
        batch_op.create_unique_constraint(_unique_name(), ["document_id"])
