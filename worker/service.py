"""Use-cases shared by the HTTP API and the CLI: submit a job, look at it, cancel it, page through
and export its results."""

import base64
import binascii
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta

from sqlalchemy.orm import Session

from worker import collection, heartbeats, store
from worker.config import Settings
from worker.errors import BROKER_ERRORS, Conflict, InvalidInput, NotFound
from worker.jobs import NewJob
from worker.lifecycle import FINISHED, JobStatus, Priority
from worker.models import Job, aware, utcnow
from worker.spec import CollectionJobSpec, JobSpec
from worker.stalls import StallCheck
from worker.views import (
    BatchError,
    CollectionOut,
    DocumentOut,
    DocumentsPage,
    JobOut,
    QueryOut,
    ResultOut,
    ResultsPage,
    WorkerOut,
)

log = logging.getLogger(__name__)
Enqueue = Callable[[str, Priority], None]


def submit_job(
    session: Session,
    spec: JobSpec | CollectionJobSpec,
    settings: Settings,
    enqueue: Enqueue | None = None,
    synchronous: bool = False,
) -> JobOut:
    """Store a job (its documents, or its queries over a collection) and hand it to the queue;
    `synchronous` marks a job a client waits on (the rerank routes)."""
    if isinstance(spec, CollectionJobSpec):
        pairs = collection.pair_count(session, spec)  # checked before anything is stored
        job = NewJob(session, settings, spec.options, spec.priority, spec.collection)
        job.add_collection_queries(spec.queries, pairs)
    else:
        _check_lengths(spec, settings.max_document_chars)
        job = NewJob(session, settings, spec.options, spec.priority, synchronous=synchronous)
        job.add_queries(spec.queries)
    return start_job(session, job.finish(), enqueue)


def _check_lengths(spec: JobSpec, max_document_chars: int) -> None:
    for index, query in enumerate(spec.queries):
        if found := query.oversized(max_document_chars):
            field, why = found
            raise InvalidInput(f"queries.{index}.{field}: {why}", field=f"queries.{index}.{field}")


def start_job(session: Session, job_id: str, enqueue: Enqueue | None) -> JobOut:
    """Ring the queue's doorbell for a stored job. The database is the source of truth: with the
    broker unreachable the job stays accepted and queued, and the reconciler sends its plan once
    the broker is back."""
    job = store.get_job(session, job_id)
    if enqueue is not None:
        try:
            enqueue(job.id, Priority(job.priority))
        except BROKER_ERRORS as error:
            log.warning(
                "job %s stored but not enqueued, the broker is unreachable (%s): the reconciler will send it",
                job.id,
                error,
            )
    return job_view(session, store.get_job(session, job.id))


def job_status(session: Session, job_id: str, stalls: StallCheck | None = None) -> JobOut:
    """A job; with `stalls`, also whether and why it stalled."""
    return job_view(session, store.get_job(session, job_id), stalls)


def list_jobs(
    session: Session, status: JobStatus | None, limit: int, stalls: StallCheck | None = None
) -> list[JobOut]:
    return [job_view(session, job, stalls) for job in store.list_jobs(session, status, limit)]


Finished = Callable[[str, bool], None]  # (job id, whether it has a webhook to deliver)


def cancel_job(session: Session, job_id: str, on_finished: Finished | None = None) -> JobOut:
    """Stop a queued or running job; what was scored so far stays, ranked, as its results.
    `on_finished` learns of it once committed (webhook, waiting clients)."""
    job = store.get_job(session, job_id)
    if not store.transition(session, job_id, JobStatus.cancelled):
        raise Conflict(f"job {job_id} is already {job.status}", field="status")
    store.cancel_batches(session, job_id)
    store.rank_results(session, job_id)
    session.commit()
    if on_finished is not None:
        on_finished(job_id, job.options.get("callback_url") is not None)
    return job_view(session, store.get_job(session, job_id))


def batch_errors(session: Session, job_id: str, limit: int) -> list[BatchError]:
    """A job's failed batches with their errors (the job's own error names the first)."""
    store.get_job(session, job_id)
    return [BatchError.from_row(batch) for batch in store.batch_errors(session, job_id, limit)]


def list_collections(session: Session, limit: int) -> list[CollectionOut]:
    return [CollectionOut.from_row(row) for row in collection.newest(session, limit)]


def collection_documents(
    session: Session, collection_id: str, cursor: str | None, limit: int
) -> DocumentsPage:
    """A page of a collection's documents as uploaded (text and metadata), by id."""
    rows = collection.documents_page(session, collection_id, cursor, limit + 1)
    last = rows[limit - 1].client_id if len(rows) > limit else None
    return DocumentsPage(documents=[DocumentOut.from_row(row) for row in rows[:limit]], next_cursor=last)


def delete_job(session: Session, job_id: str) -> None:
    """Delete a finished job with its results (a queued or running one must be cancelled first)."""
    job = store.get_job(session, job_id)
    if job.status not in FINISHED:
        raise Conflict(f"job {job_id} is {job.status}: cancel it first", field="status")
    store.delete_job(session, job_id)
    session.commit()


def purge_expired(session: Session, retention_days: float) -> int:
    """Delete the jobs that finished more than `retention_days` ago (none when it is 0); how many."""
    if retention_days <= 0:
        return 0
    expired = store.expired_jobs(session, utcnow() - timedelta(days=retention_days))
    for job_id in expired:
        store.delete_job(session, job_id)
        session.commit()
    return len(expired)


# The period of a running job's rate: long enough to span several batches, short enough to follow
# a change of pace (a worker joining or leaving) within a minute.
RATE_PERIOD = timedelta(seconds=60)


def _rate(session: Session, job: Job) -> float | None:
    """Pairs per second: of the last minute while the job runs, else (and before the first batch of
    that minute) of the whole run; None before anything was scored."""
    started, finished = aware(job.started_at), aware(job.finished_at)
    if started is None or not job.done_pairs:
        return None
    now = utcnow()
    if job.status == JobStatus.running:
        since = max(started, now - RATE_PERIOD)
        recent = store.pairs_done_since(session, job.id, since)
        if recent:
            return recent / max((now - since).total_seconds(), 1e-3)
    return job.done_pairs / max(((finished or now) - started).total_seconds(), 1e-3)


def job_view(session: Session, job: Job, stalls: StallCheck | None = None) -> JobOut:
    """What a client sees of a job: status, progress with rate and ETA (null while stalled),
    whether and why it stalled (when `stalls` is given), timestamps, options."""
    return JobOut.from_row(job, _rate(session, job), stalls.reason(job) if stalls else None)


def list_workers(session: Session, worker_timeout: float) -> list[WorkerOut]:
    """Workers seen in the last day, newest first, with what they serve and whether they are live."""
    return [
        WorkerOut(**seen.info.__dict__, last_seen=seen.last_seen, live=seen.live)
        for seen in heartbeats.seen_workers(session, worker_timeout)
    ]


def _encode_cursor(query_pk: int, rank: int) -> str:
    return base64.urlsafe_b64encode(f"{query_pk}.{rank}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        query_pk, rank = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(".")
        return int(query_pk), int(rank)
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise InvalidInput("cursor is not one this API returned", field="cursor") from error


def results_page(
    session: Session,
    job_id: str,
    query_id: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
    include_chunks: bool = False,
) -> ResultsPage:
    """One page of ranked results (by query, then rank) and the cursor of the next page, if any;
    `include_chunks` adds every window's span and raw score."""
    options = _finished_job(session, job_id, query_id).options
    after = _decode_cursor(cursor) if cursor else None
    rows = store.results_page(session, job_id, query_id, options.top_k, after, limit + 1)
    last = rows[limit - 1] if len(rows) > limit else None
    return ResultsPage(
        results=[ResultOut.from_ranked(row, options, include_chunks) for row in rows[:limit]],
        next_cursor=_encode_cursor(last.query_pk, last.rank) if last else None,
    )


def job_queries(session: Session, job_id: str, limit: int, query_id: str | None = None) -> list[QueryOut]:
    """A job's first `limit` queries (or its query `query_id`) with their texts, in submission order."""
    rows = store.query_texts(session, job_id, limit, query_id)
    return [QueryOut(id=client_id, text=text) for client_id, text in rows]


def document_texts(session: Session, job_id: str, query_id: str, document_ids: list[str]) -> dict[str, str]:
    """The whole texts of some of a query's documents (results carry only the winning window's)."""
    return store.document_texts(session, job_id, query_id, document_ids)


# Rows per store query of an export: enough to keep round trips few, few enough that one page of
# rows (with their best-window texts) stays a few MB however large the job.
EXPORT_PAGE = 2000


def export_pages(
    session: Session, job_id: str, query_id: str | None = None, page_size: int = EXPORT_PAGE
) -> Iterator[list[ResultOut]]:
    """Every ranked result of a finished job (the paged API's rows without per-window lists), a
    keyset page at a time. The checks run now, so a 404 or 409 is raised before anything streams."""
    options = _finished_job(session, job_id, query_id).options

    def pages() -> Iterator[list[ResultOut]]:
        after: tuple[int, int] | None = None
        while True:
            rows = store.results_page(session, job_id, query_id, options.top_k, after, page_size)
            if rows:
                yield [ResultOut.from_ranked(row, options, include_windows=False) for row in rows]
            if len(rows) < page_size:
                return
            after = (rows[-1].query_pk, rows[-1].rank)

    return pages()


def _finished_job(session: Session, job_id: str, query_id: str | None) -> JobOut:
    """The job whose results are asked for: it exists, has finished, and has `query_id` if given."""
    job = job_status(session, job_id)
    if job.status not in FINISHED:
        raise Conflict(f"job {job_id} is {job.status}; results are ready when it finishes", field="status")
    if query_id is not None and not store.has_query(session, job_id, query_id):
        raise NotFound(f"job {job_id} has no query {query_id!r}", field="query_id")
    return job
