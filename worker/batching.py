"""A planned job's pairs cut into batches, in SQL: only the pairs the score cache lacks are
numbered, once, into a temporary table that the batches are made from, so a rerun of a million
pairs that barely changed batches only the few that changed. A job of its own documents has its
rows already (written at submit): they get their batch by an UPDATE. A collection job's pairs wait
in a second temporary table, its snapshot (worker.collection.snapshot_pairs), and its rows are
written from there with their batch set: each row of a million-pair plan is written once, where an
UPDATE would write it a second time (and every index entry with it)."""

from contextlib import nullcontext

from sqlalchemy import Column, Integer, MetaData, String, Table, text
from sqlalchemy.orm import Session

from worker import score_cache
from worker.db import drop_scratch
from worker.models import Job

SNAPSHOT = Table(
    "snapshot_pairs",
    MetaData(),
    Column("query_id", Integer),
    Column("client_id", String(255)),
    Column("source_id", Integer),  # the collection document
    Column("position", Integer),
    prefixes=["TEMPORARY"],
)

# Pairs numbered longest document first; a collection document's pairs (one per query) stay
# together, so a batch tokenizes and chunks each document once for all its queries.
_NUMBER_OWN = """
    INSERT INTO planned_pairs (document_id, number)
    SELECT d.id, (row_number() OVER (ORDER BY length({text}) DESC, d.id) - 1) / :task_pairs
    FROM documents d {joins}
    {where}
"""
_NUMBER_SNAPSHOT = """
    INSERT INTO planned_pairs (query_id, source_id, number)
    SELECT d.query_id, d.source_id,
           (row_number() OVER (ORDER BY length({text}) DESC, d.source_id, d.query_id) - 1) / :task_pairs
    FROM snapshot_pairs d {joins}
    {where}
"""
_PLANNED_OWN = text("CREATE TEMPORARY TABLE planned_pairs (document_id INTEGER, number INTEGER)")
_PLANNED_SNAPSHOT = text(
    "CREATE TEMPORARY TABLE planned_pairs (query_id INTEGER, source_id INTEGER, number INTEGER)"
)
_INSERT_BATCHES = text(
    """
    INSERT INTO batches (job_id, number, status, pairs, attempts)
    SELECT :job_id, number, 'pending', count(*), 0 FROM planned_pairs GROUP BY number ORDER BY number
    """
)
_ASSIGN_BATCHES = text(
    """
    UPDATE documents SET batch_id = batches.id
    FROM planned_pairs JOIN batches ON batches.number = planned_pairs.number
    WHERE documents.id = planned_pairs.document_id AND batches.job_id = :job_id
    """
)
# A cached pair's row has no batch (worker.ranking gives it its result).
_WRITE_SNAPSHOT = text(
    """
    INSERT INTO documents (job_id, query_id, client_id, source_id, position, batch_id)
    SELECT :job_id, d.query_id, d.client_id, d.source_id, d.position, b.id
    FROM snapshot_pairs d
    LEFT JOIN planned_pairs p ON p.query_id = d.query_id AND p.source_id = d.source_id
    LEFT JOIN batches b ON b.job_id = :job_id AND b.number = p.number
    """
)
_COUNT = text("SELECT count(*) FROM planned_pairs")


def create_snapshot(session: Session) -> None:
    drop_scratch(session, SNAPSHOT.name)
    SNAPSHOT.create(session.connection())


def plan_batches(session: Session, job: Job, key: str | None, task_pairs: int) -> int:
    """Split a job's pairs that the cache holds no entry for under `key` (all of them without a
    key) into pending batches of at most `task_pairs`, longest first; how many pairs that is. The
    others are left without a batch: the cached pairs (see worker.ranking). A collection job's
    rows are written here, from its snapshot."""
    pairs = score_cache.pair_sql(job)
    snapshot = job.collection_id is not None
    params = {"job_id": job.id, "task_pairs": task_pairs, "key": key}
    conditions = [] if snapshot else ["d.job_id = :job_id"]
    if key is not None:
        conditions.append("s.query_hash IS NULL")
    number = (_NUMBER_SNAPSHOT if snapshot else _NUMBER_OWN).format(
        text=pairs.text,
        joins=pairs.source if key is None else pairs.entries("LEFT"),
        where=f"WHERE {' AND '.join(conditions)}" if conditions else "",
    )
    drop_scratch(session, "planned_pairs")
    session.execute(_PLANNED_SNAPSHOT if snapshot else _PLANNED_OWN)
    # a snapshot's pairs, or a join to the cache, are hashed (see bulk_joins); a job's own rows
    # are reached by key
    with score_cache.bulk_joins(session) if snapshot or key is not None else nullcontext():
        session.execute(text(number), params)
    session.execute(_INSERT_BATCHES, params)
    if snapshot:
        with score_cache.bulk_joins(session):
            session.execute(_WRITE_SNAPSHOT, params)
    else:
        session.execute(_ASSIGN_BATCHES, params)
    batched = int(session.execute(_COUNT).scalar_one())
    drop_scratch(session, "planned_pairs")
    if snapshot:
        drop_scratch(session, SNAPSHOT.name)
    return batched
