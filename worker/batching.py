"""A planned job's pairs cut into batches, in SQL: only the pairs the score cache lacks are
numbered, once, into a temporary table that both the batches and their pairs are made from, so a
rerun of a million pairs that barely changed writes rows for the few that changed."""

from sqlalchemy import text
from sqlalchemy.orm import Session

from worker import score_cache
from worker.models import Job

# Pairs numbered longest document first; a collection document's pairs (one per query) stay
# together, so a batch tokenizes and chunks each document once for all its queries.
_NUMBER = """
    INSERT INTO planned_pairs (document_id, number)
    SELECT d.id, (row_number() OVER (
               ORDER BY length({text}) DESC, coalesce(d.source_id, 0), d.id
           ) - 1) / :task_pairs
    FROM documents d {joins}
    WHERE d.job_id = :job_id {uncached}
"""
# SQLite's driver runs DDL outside a transaction when none is open, so a plan that failed after its
# CREATE could leave the table on the pooled connection: dropped first.
_DROP_LEFTOVER = text("DROP TABLE IF EXISTS planned_pairs")
_CREATE = text("CREATE TEMPORARY TABLE planned_pairs (document_id INTEGER, number INTEGER)")
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
_COUNT = text("SELECT count(*) FROM planned_pairs")
_DROP = text("DROP TABLE planned_pairs")


def plan_batches(session: Session, job: Job, key: str | None, task_pairs: int) -> int:
    """Split a job's pairs that the cache holds no entry for under `key` (all of them without a
    key) into pending batches of at most `task_pairs`, longest first; how many pairs that is. The
    others are left without a batch: the cached pairs (see worker.ranking)."""
    pairs = score_cache.pair_sql(job)
    params = {"job_id": job.id, "task_pairs": task_pairs, "key": key}
    session.execute(_DROP_LEFTOVER)
    session.execute(_CREATE)
    if key is None:
        session.execute(text(_NUMBER.format(text=pairs.text, joins=pairs.source, uncached="")), params)
    else:
        number = _NUMBER.format(
            text=pairs.text, joins=pairs.entries("LEFT"), uncached="AND s.query_hash IS NULL"
        )
        with score_cache.hash_joins(session):
            session.execute(text(number), params)
    session.execute(_INSERT_BATCHES, params)
    session.execute(_ASSIGN_BATCHES, params)
    batched = int(session.execute(_COUNT).scalar_one())
    session.execute(_DROP)
    return batched
