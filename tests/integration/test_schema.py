"""The schema the migrations build is the one the models describe, on both databases, and an
existing database keeps its rows through the upgrade that rebuilds its bulk tables."""

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import IntegrityError

from worker.db import Base
from worker.migrate import alembic_config


def test_the_migrations_build_what_the_models_describe(db_url: str) -> None:
    engine = create_engine(db_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def _insert_documents(connection: Connection, client_ids: list[str]) -> None:
    """Documents of their own (no collection) for query 1 of job j."""
    for position, client_id in enumerate(client_ids):
        connection.execute(
            text(
                "INSERT INTO documents (job_id, query_id, client_id, text, position)"
                " VALUES ('j', 1, :client_id, 'text', :position)"
            ),
            {"client_id": client_id, "position": position},
        )


def test_the_bulk_tables_keep_their_rows_through_the_rebuild(tmp_path: Path) -> None:
    """0011 to 0013 rebuild SQLite's `documents` and `results` to change their constraints and
    columns: the rows stay, through a downgrade too, a query's own document ids stay unique, a
    document has one result and a planned document keeps its batch."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0010")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO jobs (id, status, model, options, total_pairs, done_pairs, failed_pairs,"
                " created_at) VALUES ('j', 'completed', 'm', '{}', 2, 2, 0, '2026-12-07 00:00:00')"
            )
        )
        connection.execute(
            text("INSERT INTO queries (id, job_id, client_id, text, position) VALUES (1, 'j', 'q', 'q', 0)")
        )
        _insert_documents(connection, ["a", "b"])
        connection.execute(text("UPDATE documents SET batch_id = 7 WHERE client_id = 'a'"))
        connection.execute(
            text(
                "INSERT INTO results (job_id, query_id, document_id, raw_score, rank)"
                " SELECT job_id, query_id, id, position, 2 - position FROM documents"
            )
        )
    command.upgrade(alembic_config(url), "head")
    with engine.begin() as connection:
        kept = "SELECT d.client_id, r.rank FROM results r JOIN documents d ON d.id = r.document_id"
        assert connection.execute(text(f"{kept} ORDER BY r.rank")).all() == [("b", 1), ("a", 2)]
        planned = (
            "SELECT p.batch_id, d.client_id FROM batch_documents p JOIN documents d ON d.id = p.document_id"
        )
        assert connection.execute(text(planned)).all() == [(7, "a")]
    with pytest.raises(IntegrityError), engine.begin() as connection:
        _insert_documents(connection, ["a"])
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            text("INSERT INTO results (job_id, query_id, document_id, raw_score) VALUES ('j', 1, 1, 0)")
        )
    command.downgrade(alembic_config(url), "0010")
    with engine.begin() as connection:
        assert connection.execute(text(f"{kept} ORDER BY r.id")).all() == [("a", 2), ("b", 1)]
        batches = "SELECT client_id, batch_id FROM documents ORDER BY position"
        assert connection.execute(text(batches)).all() == [("a", 7), ("b", None)]
    engine.dispose()
