"""A job's results ranked per query (1 = highest raw score, ties in submission order), in SQL, when
it is finalized or cancelled. The pairs its plan found in the score cache (left without a batch)
get their results here, written once and already ranked: a rerun of a million pairs of which 1 %
changed writes no row twice, and ranks by UPDATE only the pairs it scored."""

from sqlalchemy import text
from sqlalchemy.orm import Session

from worker import score_cache
from worker.db import drop_scratch
from worker.models import Job

_RANK_SCORED = text(
    """
    UPDATE results SET rank = ranked.position FROM (
        SELECT r.document_id,
               row_number() OVER (PARTITION BY r.query_id ORDER BY r.raw_score DESC, d.position) AS position
        FROM results r JOIN documents d ON d.id = r.document_id
        WHERE r.job_id = :job_id
    ) AS ranked
    WHERE results.document_id = ranked.document_id
    """
)
# Every pair of the job that has a score: scored (its result) or cached at plan time (in no batch:
# its entry under :key), ranked together, once, into a scratch table that both the scored pairs'
# ranks and the cached pairs' results are taken from; a scored pair's entry (this job's finalize
# may just have made it) is not read. A job is ranked once: finalize and cancel rank only a running
# job, holding its row (worker.pipeline.finalize_job), so the cached pairs' results are inserted
# without looking for ones already there (ON CONFLICT cost about a second per million rows).
_RANKED = """
    CREATE TEMPORARY TABLE ranked_pairs AS
    SELECT d.id AS document_id, d.query_id, planned.document_id IS NULL AS cached,
           s.raw_score AS cached_score, s.chunks, s.best_chunk, s.best_start, s.best_end, s.windows,
           row_number() OVER (
               PARTITION BY d.query_id
               ORDER BY CASE WHEN planned.document_id IS NULL THEN s.raw_score ELSE r.raw_score END DESC,
                        d.position
           ) AS position
    FROM documents d {entries}
    LEFT JOIN (
        SELECT bd.document_id FROM batch_documents bd JOIN batches b ON b.id = bd.batch_id
        WHERE b.job_id = :job_id
    ) planned ON planned.document_id = d.id
    LEFT JOIN results r ON r.document_id = d.id AND r.job_id = :job_id AND NOT r.cached
    WHERE d.job_id = :job_id
          AND (s.raw_score IS NOT NULL AND planned.document_id IS NULL OR r.document_id IS NOT NULL)
"""
_RANK_WITH_CACHED = text(
    """
    UPDATE results SET rank = ranked_pairs.position FROM ranked_pairs
    WHERE results.job_id = :job_id AND results.document_id = ranked_pairs.document_id
          AND NOT ranked_pairs.cached
    """
)
_WRITE_CACHED = text(
    """
    INSERT INTO results (job_id, query_id, document_id, raw_score, chunks, best_chunk, best_start,
                         best_end, windows, cached, rank)
    SELECT :job_id, query_id, document_id, cached_score, chunks, best_chunk, best_start, best_end,
           windows, true, position
    FROM ranked_pairs
    WHERE cached
    """
)


def rank_results(session: Session, job: Job) -> None:
    """Rank each query's scored documents, and write the ranked results of its cached pairs."""
    if job.cache_key is None or job.cached_pairs == 0:
        session.execute(_RANK_SCORED, {"job_id": job.id})
        return
    params = {"job_id": job.id, "key": job.cache_key}
    drop_scratch(session, "ranked_pairs")
    with score_cache.bulk_joins(session):
        session.execute(text(_RANKED.format(entries=score_cache.pair_sql(job).entries("LEFT"))), params)
        # the scored pairs first, while the job's results are only theirs
        session.execute(_RANK_WITH_CACHED, params)
        session.execute(_WRITE_CACHED, params)
    drop_scratch(session, "ranked_pairs")
