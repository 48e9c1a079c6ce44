"""Collections that change (document versions, text hashes, the version a job ran against) and the
score cache

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-26 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from worker.hashing import text_hash

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("removed_in IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("collections") as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    _drop_unique_client_id()
    with op.batch_alter_table("collection_documents") as batch_op:
        batch_op.add_column(sa.Column("text_hash", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("removed_in", sa.Integer(), nullable=True))
    op.create_index(
        "ux_collection_documents_live",
        "collection_documents",
        ["collection_id", "client_id"],
        unique=True,
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )
    _hash_stored_texts()
    for table in ("queries", "documents"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("text_hash", sa.String(length=32), nullable=True))
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("collection_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("cache_key", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("cached_pairs", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("workers") as batch_op:
        batch_op.add_column(sa.Column("fingerprint", sa.String(length=64), nullable=True))
    with op.batch_alter_table("results") as batch_op:
        batch_op.add_column(sa.Column("cached", sa.Boolean(), server_default=sa.false(), nullable=False))
    _create_score_cache()


def _drop_unique_client_id() -> None:
    """The (collection, client id) constraint of 0003, unnamed there: a replaced document's old row
    now stays beside the new one, so only live rows are unique (a partial index)."""
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(
            "collection_documents_collection_id_client_id_key", "collection_documents", type_="unique"
        )
        return
    naming = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
    with op.batch_alter_table("collection_documents", naming_convention=naming) as batch_op:
        batch_op.drop_constraint("uq_collection_documents_collection_id", type_="unique")


def _hash_stored_texts(block: int = 1000) -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, text FROM collection_documents")).all()
    for start in range(0, len(rows), block):
        hashed = [{"pk": pk, "hash": text_hash(text)} for pk, text in rows[start : start + block]]
        bind.execute(sa.text("UPDATE collection_documents SET text_hash = :hash WHERE id = :pk"), hashed)


def _create_score_cache() -> None:
    op.create_table(
        "score_cache",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scoring_key", sa.String(length=32), nullable=False),
        sa.Column("query_hash", sa.String(length=32), nullable=False),
        sa.Column("document_hash", sa.String(length=32), nullable=False),
        sa.Column("collection_id", sa.String(length=32), nullable=True),
        sa.Column("raw_score", sa.Float(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("best_chunk", sa.Integer(), nullable=False),
        sa.Column("best_start", sa.Integer(), nullable=False),
        sa.Column("best_end", sa.Integer(), nullable=False),
        sa.Column("windows", sa.JSON(), nullable=True),
        sa.Column("query_truncated", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("scoring_key", "query_hash", "document_hash", name="uq_score_cache_pair"),
    )
    op.create_index("ix_score_cache_created_at", "score_cache", ["created_at"])
    op.create_index("ix_score_cache_collection", "score_cache", ["collection_id"])


def downgrade() -> None:
    op.drop_index("ix_score_cache_collection", table_name="score_cache")
    op.drop_index("ix_score_cache_created_at", table_name="score_cache")
    op.drop_table("score_cache")
    with op.batch_alter_table("results") as batch_op:
        batch_op.drop_column("cached")
    with op.batch_alter_table("workers") as batch_op:
        batch_op.drop_column("fingerprint")
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("cached_pairs")
        batch_op.drop_column("cache_key")
        batch_op.drop_column("collection_version")
    for table in ("documents", "queries"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("text_hash")
    op.execute("DELETE FROM collection_documents WHERE removed_in IS NOT NULL")
    op.drop_index("ux_collection_documents_live", table_name="collection_documents")
    with op.batch_alter_table("collection_documents") as batch_op:
        batch_op.drop_column("removed_in")
        batch_op.drop_column("version")
        batch_op.drop_column("text_hash")
        batch_op.create_unique_constraint(None, ["collection_id", "client_id"])
    with op.batch_alter_table("collections") as batch_op:
        batch_op.drop_column("updated_at")
        batch_op.drop_column("version")
