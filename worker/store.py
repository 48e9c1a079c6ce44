"""Reads and writes the rest of the code calls: jobs and their lifecycle, batches, results.

Every write that a re-delivered task may repeat is idempotent: results are upserted on their
unique document, and counters move only with the batch status change that guards them."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import uuid4

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from worker.errors import NotFound
from worker.models import (
    FINISHED,
    JOB_TRANSITIONS,
    Batch,
    BatchStatus,
    Document,
    Job,
    JobStatus,
    Query,
    Result,
    utcnow,
)
from worker.spec import JobSpec


def insert_job(session: Session, spec: JobSpec, model: str) -> Job:
    """Store a validated job with its queries and documents, status queued."""
    job = Job(
        id=uuid4().hex,
        status=JobStatus.queued,
        model=model,
        options=spec.options.model_dump(),
        total_pairs=sum(len(query.documents) for query in spec.queries),
    )
    session.add(job)
    queries = [
        Query(job_id=job.id, client_id=q.id, text=q.text, position=i) for i, q in enumerate(spec.queries)
    ]
    session.add_all(queries)
    session.flush()
    rows = [
        {
            "job_id": job.id,
            "query_id": row.id,
            "client_id": d.id,
            "text": d.text,
            "meta": d.metadata,
            "position": i,
        }
        for row, q in zip(queries, spec.queries, strict=True)
        for i, d in enumerate(q.documents)
    ]
    session.execute(insert(Document), rows)
    return job


def get_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id!r}", field="id")
    return job


def lock_job_status(session: Session, job_id: str) -> str:
    """A job's status, with its row locked until commit (PostgreSQL), so a cancel cannot slip in
    between this check and the write that depends on it."""
    return session.execute(select(Job.status).where(Job.id == job_id).with_for_update()).scalar_one()


def list_jobs(session: Session, status: JobStatus | None, limit: int) -> Sequence[Job]:
    """Newest first."""
    stmt = select(Job).order_by(Job.created_at.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    return session.scalars(stmt).all()


def transition(session: Session, job_id: str, new: JobStatus, **fields: Any) -> bool:
    """Move a job to `new` if its current status allows it (atomically); False if it did not."""
    allowed = [old for old, nexts in JOB_TRANSITIONS.items() if new in nexts]
    if new == JobStatus.running:
        fields.setdefault("started_at", utcnow())
    elif new in FINISHED:
        fields.setdefault("finished_at", utcnow())
    stmt = update(Job).where(Job.id == job_id, Job.status.in_(allowed)).values(status=new, **fields)
    moved = session.execute(stmt.returning(Job.id).execution_options(synchronize_session=False)).first()
    session.expire_all()
    return moved is not None


def pair_lengths(session: Session, job_id: str) -> list[tuple[int, int]]:
    """(document id, characters of query + document) for every pair of a job: the planner's input."""
    stmt = (
        select(Document.id, func.length(Document.text) + func.length(Query.text))
        .join(Query, Query.id == Document.query_id)
        .where(Document.job_id == job_id)
    )
    return [(doc_id, length) for doc_id, length in session.execute(stmt)]


def insert_batches(session: Session, job_id: str, groups: list[list[int]]) -> list[int]:
    """One pending batch per group of document ids; documents point at their batch."""
    batches = [Batch(job_id=job_id, pairs=len(group)) for group in groups]
    session.add_all(batches)
    session.flush()
    assignments = [
        {"id": doc_id, "batch_id": batch.id}
        for batch, group in zip(batches, groups, strict=True)
        for doc_id in group
    ]
    session.execute(update(Document), assignments)
    return [batch.id for batch in batches]


def open_batches(session: Session, job_id: str) -> list[int]:
    """Batches not yet done or failed (re-enqueued when a plan task is delivered again)."""
    stmt = select(Batch.id).where(
        Batch.job_id == job_id, Batch.status.in_([BatchStatus.pending, BatchStatus.running])
    )
    return list(session.scalars(stmt.order_by(Batch.id)))


def claim_batch(session: Session, batch_id: int) -> tuple[str, int] | None:
    """Mark a batch running and count the attempt; (job id, attempts) or None if already finished."""
    stmt = (
        update(Batch)
        .where(Batch.id == batch_id, Batch.status.in_([BatchStatus.pending, BatchStatus.running]))
        .values(status=BatchStatus.running, attempts=Batch.attempts + 1)
        .returning(Batch.job_id, Batch.attempts)
    )
    row = session.execute(stmt).one_or_none()
    return None if row is None else (row[0], row[1])


def batch_job_id(session: Session, batch_id: int) -> str:
    return session.execute(select(Batch.job_id).where(Batch.id == batch_id)).scalar_one()


def batch_pairs(session: Session, batch_id: int) -> list[tuple[int, int, str, str]]:
    """(document id, query id, query text, document text) of every pair in a batch."""
    stmt = (
        select(Document.id, Query.id, Query.text, Document.text)
        .join(Query, Query.id == Document.query_id)
        .where(Document.batch_id == batch_id)
    )
    return [(d, q, qt, dt) for d, q, qt, dt in session.execute(stmt)]


def _upsert(session: Session, rows: list[dict[str, Any]]) -> None:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(Result).values(rows)
    written = {column: stmt.excluded[column] for column in rows[0] if column != "document_id"}
    session.execute(stmt.on_conflict_do_update(index_elements=[Result.document_id], set_=written))


def record_results(session: Session, batch_id: int, job_id: str, results: list[dict[str, Any]]) -> bool:
    """Store a batch's result rows (Result columns: document_id, query_id, raw_score, window
    fields) and mark it done; the job's counter moves only if this call finished the batch
    (a second delivery changes nothing)."""
    if results:
        _upsert(session, [{"job_id": job_id, **row} for row in results])
    return _finish_batch(session, batch_id, job_id, BatchStatus.done, Job.done_pairs, None)


def mark_truncated(session: Session, query_ids: set[int]) -> None:
    """Flag queries that were cut to fit the model (their results say so)."""
    if query_ids:
        session.execute(update(Query).where(Query.id.in_(query_ids)).values(truncated=True))


def fail_batch(session: Session, batch_id: int, job_id: str, error: str) -> bool:
    """Mark a batch failed (its pairs count as failed in the job's progress)."""
    return _finish_batch(session, batch_id, job_id, BatchStatus.failed, Job.failed_pairs, error)


def _finish_batch(
    session: Session, batch_id: int, job_id: str, status: BatchStatus, counter: Any, error: str | None
) -> bool:
    stmt = (
        update(Batch)
        .where(Batch.id == batch_id, Batch.status.in_([BatchStatus.pending, BatchStatus.running]))
        .values(status=status, error=error, finished_at=utcnow())
        .returning(Batch.pairs)
    )
    pairs = session.execute(stmt).scalar_one_or_none()
    if pairs is None:
        return False
    column = counter.key
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values({column: counter + pairs})
        .execution_options(synchronize_session=False)
    )
    session.expire_all()
    return True


_RANK_SQL = text(
    """
    UPDATE results SET rank = ranked.position FROM (
        SELECT r.id AS result_id,
               row_number() OVER (PARTITION BY r.query_id ORDER BY r.raw_score DESC, d.position) AS position
        FROM results r JOIN documents d ON d.id = r.document_id
        WHERE r.job_id = :job_id
    ) AS ranked
    WHERE results.id = ranked.result_id
    """
)


def rank_results(session: Session, job_id: str) -> None:
    """Rank each query's scored documents: 1 = highest raw score, ties in submission order."""
    session.execute(_RANK_SQL, {"job_id": job_id})


def results_page(
    session: Session,
    job_id: str,
    query_id: str | None,
    top_k: int | None,
    after: tuple[int, int] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Ranked results ordered by query (submission order) then rank, after the cursor position,
    with the winning window's text cut from the document."""
    best_text = func.substr(Document.text, Result.best_start + 1, Result.best_end - Result.best_start)
    stmt = (
        select(
            Query.client_id,
            Query.position,
            Query.truncated,
            Document.client_id,
            Result.rank,
            Result.raw_score,
            Result.chunks,
            Result.best_chunk,
            Result.best_start,
            Result.best_end,
            best_text,
            Result.windows,
        )
        .join(Query, Query.id == Result.query_id)
        .join(Document, Document.id == Result.document_id)
        .where(Result.job_id == job_id, Result.rank.is_not(None))
        .order_by(Query.position, Result.rank)
        .limit(limit)
    )
    if query_id is not None:
        stmt = stmt.where(Query.client_id == query_id)
    if top_k is not None:
        stmt = stmt.where(Result.rank <= top_k)
    if after is not None:
        position, rank = after
        stmt = stmt.where((Query.position > position) | ((Query.position == position) & (Result.rank > rank)))
    keys = (
        "query_id",
        "query_position",
        "query_truncated",
        "document_id",
        "rank",
        "raw_score",
        "chunks",
        "best_chunk",
        "best_start",
        "best_end",
        "best_text",
        "windows",
    )
    return [dict(zip(keys, row, strict=True)) for row in session.execute(stmt)]


def has_query(session: Session, job_id: str, query_id: str) -> bool:
    stmt = select(Query.id).where(Query.job_id == job_id, Query.client_id == query_id)
    return session.execute(stmt).first() is not None


def pairs_done_since(session: Session, job_id: str, since: datetime) -> int:
    """Pairs of a job's batches scored at or after `since`: the numerator of its recent rate."""
    stmt = select(func.coalesce(func.sum(Batch.pairs), 0)).where(
        Batch.job_id == job_id, Batch.status == BatchStatus.done, Batch.finished_at >= since
    )
    return int(session.execute(stmt).scalar_one())
