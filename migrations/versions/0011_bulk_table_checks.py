"""Fewer checks per row on the two bulk tables: the foreign keys that other keys imply, and a
uniqueness that a collection job's pairs keep by construction

A million-pair job writes a million `documents` rows at plan time and a million `results` rows;
each foreign key is one lookup and one row lock per written row, about half of what those writes
cost. `documents.job_id`, `results.job_id` and `results.query_id` follow from `documents.query_id`
and `results.document_id` (which stay), and a job's rows are deleted children first by its own
code (`store.delete_job`), not by cascades. A query's document ids stay unique where the client
gave them (`source_id` null); a collection job's come from the collection's live documents, which a
unique index keeps unique already.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 05:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IMPLIED = {"documents": [("job_id", "jobs")], "results": [("job_id", "jobs"), ("query_id", "queries")]}
OWN = sa.text("source_id IS NULL")
# SQLite's constraints from 0001 are unnamed: batch mode names them by this convention
NAMING = {
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
}


def _foreign_key_name(table: str, column: str, referred: str) -> str:
    if op.get_bind().dialect.name == "postgresql":
        return f"{table}_{column}_fkey"
    return f"fk_{table}_{column}_{referred}"


def _unique_name() -> str:
    postgres = op.get_bind().dialect.name == "postgresql"
    return "documents_query_id_client_id_key" if postgres else "uq_documents_query_id"


def upgrade() -> None:
    for table, keys in IMPLIED.items():
        with op.batch_alter_table(table, naming_convention=NAMING) as batch_op:
            for column, referred in keys:
                batch_op.drop_constraint(_foreign_key_name(table, column, referred), type_="foreignkey")
            if table == "documents":
                batch_op.drop_constraint(_unique_name(), type_="unique")
    op.create_index(
        "ux_documents_own_client_id",
        "documents",
        ["query_id", "client_id"],
        unique=True,
        sqlite_where=OWN,
        postgresql_where=OWN,
    )


def downgrade() -> None:
    op.drop_index("ux_documents_own_client_id", table_name="documents")
    for table, keys in IMPLIED.items():
        with op.batch_alter_table(table, naming_convention=NAMING) as batch_op:
            for column, referred in keys:
                name = _foreign_key_name(table, column, referred)
                batch_op.create_foreign_key(name, referred, [column], ["id"], ondelete="CASCADE")
            if table == "documents":
                batch_op.create_unique_constraint(_unique_name(), ["query_id", "client_id"])
