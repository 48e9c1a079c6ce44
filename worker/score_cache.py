"""The score cache: a pair's scores kept under the hashes of everything that decides them (model
name and weights, dtype, max_length, chunking and cleaning; the query's and document's texts), so
a job run again over a collection that barely changed scores only what changed. Looked up and
filled in bulk, in SQL, at plan and finalize time: no pair passes through Python."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from worker.db import on_postgres, rows_affected
from worker.hashing import text_hash
from worker.lifecycle import JobStatus
from worker.models import CachedScore, Job, aware
from worker.spec import JobOptions


@dataclass(frozen=True)
class ModelIdentity:
    """What a worker serves, as far as scores are concerned: the model's name, a fingerprint of
    its weights and the dtype they run in."""

    name: str
    fingerprint: str
    dtype: str


def scoring_key(identity: ModelIdentity, options: JobOptions) -> str:
    """The hash of every setting that changes a pair's raw score (not threshold, top_k or
    normalize: they are applied when results are read)."""
    decisive = {
        "model": identity.name,
        "weights": identity.fingerprint,
        "dtype": identity.dtype,
        "max_length": options.max_length,
        "chunking": options.chunking.model_dump(),
        "clean_html": options.clean_html,
    }
    return text_hash(json.dumps(decisive, sort_keys=True))


@dataclass(frozen=True)
class PairSql:
    """SQL over a job's pairs, `d` (documents), for its kind of job. A pair's document text is its
    own or its collection document's (`c`): one form for each, so that both hashes are plain
    equi-join keys (a coalesce over an outer join would only filter after the join)."""

    source: str  # joins c to d for a collection job
    text: str
    document_hash: str

    def entries(self, how: str = "") -> str:
        """Join each pair to its query `q` and to its entry `s` under :key (`how` = "LEFT": keep
        the pairs that have none)."""
        return f"""JOIN queries q ON q.id = d.query_id {self.source}
            {how} JOIN score_cache s ON s.scoring_key = :key AND s.query_hash = q.text_hash
                                    AND s.document_hash = {self.document_hash}"""


OWN_PAIRS = PairSql("", "d.text", "d.text_hash")
COLLECTION_PAIRS = PairSql("JOIN collection_documents c ON c.id = d.source_id", "c.text", "c.text_hash")


def pair_sql(job: Job) -> PairSql:
    return OWN_PAIRS if job.collection_id is None else COLLECTION_PAIRS


# An advisory lock (PostgreSQL): plans read the cache holding it shared, a prune deletes holding it
# alone, so a prune never takes entries that a plan counted on and has not yet committed.
_READERS = 0x72657175


def hold_for_plan(session: Session) -> None:
    """Keep a prune from deleting what this plan reads until it commits (SQLite: its one writer
    does that already)."""
    if on_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock_shared(:lock)"), {"lock": _READERS})


@contextmanager
def bulk_joins(session: Session) -> Iterator[None]:
    """Join a new job's pairs (or a scratch table of them) to the cache by hashing them: their
    rows are not in PostgreSQL's statistics yet, so the planner would guess a few and probe the
    cache once per pair, or sort a million rows for a merge; hashing is right at any size. With 64
    MB of work_mem (at 4 MB the hashes of a million pairs went to disk in batches) and no JIT (it
    compiles for about as long as it would save). Only around such joins: elsewhere the job's
    rows are reached by key."""
    postgres = on_postgres(session)
    if postgres:
        for name, value in _BULK.items():
            session.execute(text(f"SET LOCAL {name} = {value}"))
    yield
    if postgres:
        for name in _BULK:
            session.execute(text(f"RESET {name}"))


_BULK = {"enable_nestloop": "off", "enable_mergejoin": "off", "work_mem": "'64MB'", "jit": "off"}


_DOCUMENT_HASH = "coalesce(d.text_hash, c.text_hash)"
_TRUNCATED = text(
    """
    UPDATE queries SET truncated = true WHERE job_id = :job_id AND EXISTS (
        SELECT 1 FROM score_cache s WHERE s.scoring_key = :key AND s.query_hash = queries.text_hash
                                      AND s.query_truncated)
    """
)
# A job's scored results kept for later jobs (a pair already kept is left as it is).
_FILL = text(
    f"""
    INSERT INTO score_cache (scoring_key, query_hash, document_hash, collection_id, raw_score,
                             chunks, best_chunk, best_start, best_end, windows, query_truncated,
                             created_at)
    SELECT :key, q.text_hash, {_DOCUMENT_HASH}, :collection_id, r.raw_score, r.chunks,
           r.best_chunk, r.best_start, r.best_end, r.windows, q.truncated, :now
    FROM results r
    JOIN documents d ON d.id = r.document_id
    JOIN queries q ON q.id = d.query_id
    LEFT JOIN collection_documents c ON c.id = d.source_id
    WHERE r.job_id = :job_id AND NOT r.cached AND q.text_hash IS NOT NULL
          AND {_DOCUMENT_HASH} IS NOT NULL
    ON CONFLICT (scoring_key, query_hash, document_hash) DO NOTHING
    """
)


def reuse(session: Session, job: Job, key: str, found: int) -> None:
    """Count a planned job's `found` pairs that the cache holds under `key` as done and as cached
    (they were left out of its batches; finalize gives them their results, see worker.ranking).
    The key is recorded on the job, so its finalize fills the cache."""
    session.execute(_TRUNCATED, {"job_id": job.id, "key": key})
    # the tokens per pair its key implies, as an earlier job with the key recorded them: a job
    # whose every pair is cached scores no batch that would record them
    earlier = select(Job.effective_max_length).where(
        Job.cache_key == key, Job.effective_max_length.is_not(None)
    )
    values = {
        "cache_key": key,
        "cached_pairs": found,
        "done_pairs": Job.done_pairs + found,
        "effective_max_length": func.coalesce(Job.effective_max_length, earlier.limit(1).scalar_subquery()),
    }
    session.execute(update(Job).where(Job.id == job.id).values(values))
    session.refresh(job)


def fill(session: Session, job: Job, now: datetime) -> int:
    """Keep a finished job's scored pairs under its key; how many were new to the cache."""
    if job.cache_key is None:
        return 0
    params = {"job_id": job.id, "key": job.cache_key, "collection_id": job.collection_id, "now": now}
    return rows_affected(session.execute(_FILL, params))


@dataclass(frozen=True)
class CacheSize:
    entries: int
    oldest: datetime | None
    newest: datetime | None


def size(session: Session) -> CacheSize:
    stmt = select(func.count(), func.min(CachedScore.created_at), func.max(CachedScore.created_at))
    entries, oldest, newest = session.execute(stmt).one()
    return CacheSize(int(entries), aware(oldest), aware(newest))


def prune(session: Session, older_than: datetime | None, collection_id: str | None) -> int:
    """Delete the entries made before `older_than` and for `collection_id` (either alone when the
    other is None; the whole cache when both are), except those a running job's finalize will
    read (its cached pairs' results are made from them); how many."""
    if on_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": _READERS})
    in_use = select(Job.cache_key).where(Job.status == JobStatus.running, Job.cache_key.is_not(None))
    stmt = delete(CachedScore).where(CachedScore.scoring_key.not_in(in_use))
    if older_than is not None:
        stmt = stmt.where(CachedScore.created_at < older_than)
    if collection_id is not None:
        stmt = stmt.where(CachedScore.collection_id == collection_id)
    return rows_affected(session.execute(stmt.execution_options(synchronize_session=False)))
