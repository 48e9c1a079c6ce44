"""Reads and writes of a job's batches (planned by worker.batching): a batch's pairs, and
what scoring one writes back (results, its status, the job's counters).

A re-delivered task may repeat any write here: results are upserted on their unique document, and
a job's counter moves only with the batch status change that guards it."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from worker.lifecycle import BATCH_TRANSITIONS, OPEN_BATCH, BatchStatus, may_become
from worker.models import Batch, BatchDocument, CollectionDocument, Document, Job, Query, Result, utcnow
from worker.store import document_text_column, insert_rows


def open_batches(session: Session, job_id: str) -> list[int]:
    """Batches on the queue or running (enqueued again when a plan task is delivered again)."""
    stmt = select(Batch.id).where(Batch.job_id == job_id, Batch.status.in_(OPEN_BATCH))
    return list(session.scalars(stmt.order_by(Batch.number)))


def batch_job_id(session: Session, batch_id: int) -> str:
    return session.execute(select(Batch.job_id).where(Batch.id == batch_id)).scalar_one()


class BatchPair(NamedTuple):
    document_pk: int
    query_pk: int
    query: str
    document: str


def batch_pairs(session: Session, batch_id: int) -> list[BatchPair]:
    """Every (query, document) pair of a batch, with the primary keys its results are stored under."""
    stmt = (
        select(Document.id, Query.id, Query.text, document_text_column())
        .select_from(BatchDocument)
        .join(Document, Document.id == BatchDocument.document_id)
        .join(Query, Query.id == Document.query_id)
        .outerjoin(CollectionDocument, CollectionDocument.id == Document.source_id)
        .where(BatchDocument.batch_id == batch_id)
    )
    return [BatchPair(*row) for row in session.execute(stmt)]


@dataclass(frozen=True)
class ScoredRow:
    """One scored pair, as a batch stores it: the winning token window's span, and every
    window's [start, end, raw_score] when there was more than one."""

    document_pk: int
    query_pk: int
    raw_score: float
    windows_read: int
    best_window: int
    best_start: int
    best_end: int
    windows: list[list[float]] | None

    def columns(self, job_id: str) -> dict[str, object]:
        return {
            "job_id": job_id,
            "document_id": self.document_pk,
            "query_id": self.query_pk,
            "raw_score": self.raw_score,
            "chunks": self.windows_read,
            "best_chunk": self.best_window,
            "best_start": self.best_start,
            "best_end": self.best_end,
            "windows": self.windows,
        }


def record_results(
    session: Session, batch_id: int, job_id: str, results: Sequence[ScoredRow], scorer: str | None = None
) -> bool:
    """Store a batch's scored rows and mark it done, scored by worker `scorer`; the job's counter
    moves only if this call finished the batch (a second delivery changes nothing)."""
    insert_rows(session, Result, [row.columns(job_id) for row in results], update_on=Result.document_id)
    return _finish_batch(session, batch_id, job_id, BatchStatus.done, Job.done_pairs, None, scorer)


def fail_batch(session: Session, batch_id: int, job_id: str, error: str) -> bool:
    """Mark a batch failed (its pairs count as failed in the job's progress)."""
    return _finish_batch(session, batch_id, job_id, BatchStatus.failed, Job.failed_pairs, error)


def skip_batch(session: Session, batch_id: int, job_id: str) -> bool:
    """Mark a batch of a cancelled job cancelled: not scored, not failed (no counter moves: a
    cancelled job's unscored pairs are what done and failed leave of its total)."""
    return _finish_batch(session, batch_id, job_id, BatchStatus.cancelled, None, None)


def cancel_batches(session: Session, job_id: str) -> None:
    """Cancel a job's batches that no worker holds (a running one is skipped when it finishes)."""
    unheld = (BatchStatus.pending, BatchStatus.queued)
    stmt = update(Batch).where(Batch.job_id == job_id, Batch.status.in_(unheld))
    session.execute(stmt.values(status=BatchStatus.cancelled, finished_at=utcnow()))


def _finish_batch(
    session: Session,
    batch_id: int,
    job_id: str,
    status: BatchStatus,
    counter: Any,
    error: str | None,
    scorer: str | None = None,
) -> bool:
    written: dict[str, Any] = {"status": status, "error": error, "finished_at": utcnow(), "lease_until": None}
    if scorer is not None:
        written["worker"] = scorer
    stmt = (
        update(Batch)
        .where(Batch.id == batch_id, Batch.status.in_(may_become(BATCH_TRANSITIONS, status)))
        .values(written)
        .returning(Batch.pairs)
    )
    pairs = session.execute(stmt).scalar_one_or_none()
    if pairs is None:
        return False
    if counter is None:
        return True
    column = counter.key
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values({column: counter + pairs})
        .execution_options(synchronize_session=False)
    )
    session.expire_all()
    return True


def batch_errors(session: Session, job_id: str, limit: int) -> Sequence[Batch]:
    """A job's failed batches, in planning order, with their errors."""
    stmt = select(Batch).where(Batch.job_id == job_id, Batch.status == BatchStatus.failed)
    return session.scalars(stmt.order_by(Batch.number).limit(limit)).all()


def pairs_done_since(session: Session, job_id: str, since: datetime) -> int:
    """Pairs of a job's batches scored at or after `since`: the numerator of its recent rate."""
    stmt = select(func.coalesce(func.sum(Batch.pairs), 0)).where(
        Batch.job_id == job_id, Batch.status == BatchStatus.done, Batch.finished_at >= since
    )
    return int(session.execute(stmt).scalar_one())


def last_scored_at(session: Session, job_id: str) -> datetime | None:
    """When the job's latest batch was scored; None before the first."""
    stmt = select(func.max(Batch.finished_at)).where(Batch.job_id == job_id, Batch.status == BatchStatus.done)
    return session.execute(stmt).scalar_one()
