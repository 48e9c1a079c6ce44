"""The two bulk tables without foreign keys; a query's document ids unique only where the client
gave them; only planned pairs in the batch index

A million-pair job writes a million `documents` rows at plan time and a million `results` rows;
each foreign key is one lookup and one row lock per written row (a lock that dirties the parent's
page), measured at about half of what those writes cost. What the keys guarded is kept by the code
that writes and deletes these rows: a job's rows are written while it is running, under its row's
lock, and deleted children first once it is finished (`store.delete_job`), never both at once; a
replaced collection document is swept only when no documents row refers to it, under the
collection's lock that a plan holds too. A collection job's document ids come from the collection's
live documents, which a unique index keeps unique already. Most of a rerun's pairs come from the
score cache and have no batch: the batch index leaves them out.

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

# table: (column, referred table, ON DELETE, PostgreSQL's name for the key)
KEYS = {
    "documents": [
        ("job_id", "jobs", "CASCADE", "documents_job_id_fkey"),
        ("query_id", "queries", "CASCADE", "documents_query_id_fkey"),
        ("batch_id", "batches", "SET NULL", "documents_batch_id_fkey"),
        ("source_id", "collection_documents", "RESTRICT", "fk_documents_source_id"),
    ],
    "results": [
        ("job_id", "jobs", "CASCADE", "results_job_id_fkey"),
        ("query_id", "queries", "CASCADE", "results_query_id_fkey"),
        ("document_id", "documents", "CASCADE", "results_document_id_fkey"),
    ],
}
OWN = sa.text("source_id IS NULL")
PLANNED = sa.text("batch_id IS NOT NULL")
# SQLite's constraints from 0001 are unnamed: batch mode names them by this convention
NAMING = {
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
}


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _key_name(table: str, column: str, referred: str, postgres_name: str) -> str:
    if _postgres() or column == "source_id":  # 0003 named that one
        return postgres_name
    return f"fk_{table}_{column}_{referred}"


def _unique_name() -> str:
    return "documents_query_id_client_id_key" if _postgres() else "uq_documents_query_id"


def upgrade() -> None:
    for table, keys in KEYS.items():
        with op.batch_alter_table(table, naming_convention=NAMING) as batch_op:
            for column, referred, _, name in keys:
                batch_op.drop_constraint(_key_name(table, column, referred, name), type_="foreignkey")
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
    op.drop_index("ix_documents_batch_id", table_name="documents")
    op.create_index(
        "ix_documents_batch_id", "documents", ["batch_id"], sqlite_where=PLANNED, postgresql_where=PLANNED
    )


def downgrade() -> None:
    op.drop_index("ux_documents_own_client_id", table_name="documents")
    op.drop_index("ix_documents_batch_id", table_name="documents")
    op.create_index("ix_documents_batch_id", "documents", ["batch_id"])
    for table, keys in KEYS.items():
        with op.batch_alter_table(table, naming_convention=NAMING) as batch_op:
            for column, referred, on_delete, name in keys:
                batch_op.create_foreign_key(
                    _key_name(table, column, referred, name), referred, [column], ["id"], ondelete=on_delete
                )
            if table == "documents":
                batch_op.create_unique_constraint(_unique_name(), ["query_id", "client_id"])
