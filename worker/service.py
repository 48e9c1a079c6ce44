"""Use-cases shared by the HTTP API and the CLI: submit a job, look at it, cancel it, page through
and export its results."""

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from worker import (
    batch_store,
    collection,
    heartbeats,
    idempotency,
    judgements,
    ranking,
    schedule_store,
    score_cache,
    store,
)
from worker.config import Settings
from worker.cursors import PROCESS_CURSORS, Cursors
from worker.errors import BROKER_ERRORS, Conflict, InvalidInput, NotFound
from worker.idempotency import RequestKey
from worker.jobs import NewJob, Stored
from worker.lifecycle import FINISHED, JobStatus, Priority
from worker.models import Job, aware, utcnow
from worker.spec import CollectionJobSpec, CollectionQuerySpec, JobOptions, JobSpec
from worker.stalls import StallCheck
from worker.tenancy import TRUSTED, Caller
from worker.views import (
    BatchError,
    CacheOut,
    CachePruned,
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


@dataclass(frozen=True)
class Accepted:
    """A submitted job, and whether it is the one an earlier request with the same
    Idempotency-Key created (200, not 202)."""

    job: JobOut
    replayed: bool


def accept_job(
    session: Session,
    spec: JobSpec | CollectionJobSpec,
    settings: Settings,
    enqueue: Enqueue | None = None,
    synchronous: bool = False,
    caller: Caller = TRUSTED,
    request_key: RequestKey | None = None,
) -> Accepted:
    """Store a job of `caller`'s tenant (its documents, or its queries over a collection it may
    see, and its judgements) and hand it to the queue; `synchronous` marks a job a client waits on
    (the rerank routes)."""
    judgements.check(spec.qrels, {query.id for query in spec.queries})
    if isinstance(spec, CollectionJobSpec):
        job = _collection_job(session, spec, settings, caller, request_key)
    else:
        _check_lengths(spec, settings.max_document_chars)
        job = NewJob(session, settings, spec.options, spec.priority, None, synchronous, caller, request_key)
        job.add_queries(spec.queries)
    judgements.store_judgements(session, job.job.id, spec.qrels)
    return start_job(session, job.finish(), enqueue)


def submit_job(
    session: Session,
    spec: JobSpec | CollectionJobSpec,
    settings: Settings,
    enqueue: Enqueue | None = None,
    synchronous: bool = False,
    caller: Caller = TRUSTED,
) -> JobOut:
    """accept_job without an Idempotency-Key: the new job."""
    return accept_job(session, spec, settings, enqueue, synchronous, caller).job


def _collection_job(
    session: Session,
    spec: CollectionJobSpec,
    settings: Settings,
    caller: Caller,
    request_key: RequestKey | None = None,
    source: Job | None = None,
) -> NewJob:
    """A job of `caller`'s tenant over a collection's current documents, unfinished; a rerun of
    `source` if given."""
    pairs = collection.pair_count(session, spec, caller)  # checked before anything is stored
    rerun_of, model = (source.id, source.model) if source else (None, None)
    job = NewJob(
        session,
        settings,
        spec.options,
        spec.priority,
        spec.collection,
        False,
        caller,
        request_key,
        rerun_of,
        model,
    )
    job.add_collection_queries(spec.queries, pairs)
    return job


def create_rerun(session: Session, job_id: str, settings: Settings, caller: Caller = TRUSTED) -> Stored:
    """Store a new job with the queries, documents or collection, options, model and judgements of
    job `job_id` (over the collection's contents now) that records which job it reran; it belongs
    to the source's tenant, whoever asks (an admin, a schedule)."""
    source = store.get_job(session, job_id, caller)
    owner = Caller(tenant=source.tenant, admin=False)
    options, priority = JobOptions.model_validate(source.options), Priority(source.priority)
    if source.collection_id is not None:
        queries = [
            CollectionQuerySpec(id=query.client_id, text=query.text, document_ids=query.document_ids)
            for query in store.job_queries(session, source.id)
        ]
        spec = CollectionJobSpec(
            collection=source.collection_id, queries=queries, options=options, priority=priority
        )
        job = _collection_job(session, spec, settings, owner, source=source)
    else:
        job = NewJob(
            session, settings, options, priority, caller=owner, rerun_of=source.id, model=source.model
        )
        job.copy_queries(source.id)
    judgements.copy(session, source.id, job.job.id)
    return job.finish()


def rerun_job(
    session: Session, job_id: str, settings: Settings, enqueue: Enqueue | None, caller: Caller = TRUSTED
) -> JobOut:
    """Run job `job_id` again, as a new job (create_rerun), and put it on the queue."""
    return start_job(session, create_rerun(session, job_id, settings, caller), enqueue).job


def _check_lengths(spec: JobSpec, max_document_chars: int) -> None:
    for index, query in enumerate(spec.queries):
        if found := query.oversized(max_document_chars):
            field, why = found
            raise InvalidInput(f"queries.{index}.{field}: {why}", field=f"queries.{index}.{field}")


def start_job(session: Session, stored: Stored, enqueue: Enqueue | None) -> Accepted:
    """Ring the queue's doorbell for a stored job (a replayed one rang already). The database is
    the source of truth: with the broker unreachable the job stays accepted and queued, and the
    reconciler sends its plan once the broker is back."""
    job = store.get_job(session, stored.job_id)
    if stored.replayed:
        return Accepted(job_view(session, job), replayed=True)
    if enqueue is not None:
        try:
            enqueue(job.id, Priority(job.priority))
        except BROKER_ERRORS as error:
            log.warning(
                "job %s stored but not enqueued, the broker is unreachable (%s): the reconciler will send it",
                job.id,
                error,
            )
    return Accepted(job_view(session, store.get_job(session, job.id)), replayed=False)


def job_status(
    session: Session, job_id: str, stalls: StallCheck | None = None, caller: Caller = TRUSTED
) -> JobOut:
    """A job `caller` may see; with `stalls`, also whether and why it stalled."""
    return job_view(session, store.get_job(session, job_id, caller), stalls)


def list_jobs(
    session: Session,
    status: JobStatus | None,
    limit: int,
    stalls: StallCheck | None = None,
    caller: Caller = TRUSTED,
) -> list[JobOut]:
    """The jobs `caller` may see, newest first."""
    return [job_view(session, job, stalls) for job in store.list_jobs(session, status, limit, caller)]


Finished = Callable[[str, bool], None]  # (job id, whether it has a webhook to deliver)


def cancel_job(
    session: Session, job_id: str, on_finished: Finished | None = None, caller: Caller = TRUSTED
) -> JobOut:
    """Stop a queued or running job; what was scored so far stays, ranked, as its results.
    `on_finished` learns of it once committed (webhook, waiting clients)."""
    job = store.get_job(session, job_id, caller)
    if not store.transition(session, job_id, JobStatus.cancelled):
        raise Conflict(f"job {job_id} is already {job.status}", field="status")
    batch_store.cancel_batches(session, job_id)
    ranking.rank_results(session, job)
    session.commit()
    if on_finished is not None:
        on_finished(job_id, job.options.get("callback_url") is not None)
    return job_view(session, store.get_job(session, job_id))


def batch_errors(session: Session, job_id: str, limit: int, caller: Caller = TRUSTED) -> list[BatchError]:
    """A job's failed batches with their errors (the job's own error names the first)."""
    store.get_job(session, job_id, caller)
    return [BatchError.from_row(batch) for batch in batch_store.batch_errors(session, job_id, limit)]


def list_collections(session: Session, limit: int, caller: Caller = TRUSTED) -> list[CollectionOut]:
    """The collections `caller` may see, newest first."""
    return [CollectionOut.from_row(row) for row in collection.newest(session, limit, caller)]


def get_collection(session: Session, collection_id: str, caller: Caller = TRUSTED) -> CollectionOut:
    return CollectionOut.from_row(collection.get(session, collection_id, caller))


def delete_collection(session: Session, collection_id: str, caller: Caller = TRUSTED) -> None:
    collection.remove(session, collection_id, caller)


def collection_documents(
    session: Session, collection_id: str, cursor: str | None, limit: int, caller: Caller = TRUSTED
) -> DocumentsPage:
    """A page of a collection's documents as uploaded (text and metadata), by id."""
    rows = collection.documents_page(session, collection_id, cursor, limit + 1, caller)
    last = rows[limit - 1].client_id if len(rows) > limit else None
    return DocumentsPage(documents=[DocumentOut.from_row(row) for row in rows[:limit]], next_cursor=last)


def cache_size(session: Session) -> CacheOut:
    size = score_cache.size(session)
    return CacheOut(entries=size.entries, oldest=size.oldest, newest=size.newest)


def prune_cache(session: Session, older_than_days: float | None, collection_id: str | None) -> CachePruned:
    """Delete the score cache's entries older than `older_than_days` and/or made for a collection's
    jobs (both given: entries that are both); at least one must be given."""
    if older_than_days is None and collection_id is None:
        raise InvalidInput("say what to prune: older_than_days, collection or both", field="older_than_days")
    older_than = None if older_than_days is None else utcnow() - timedelta(days=older_than_days)
    deleted = score_cache.prune(session, older_than, collection_id)
    session.commit()
    return CachePruned(deleted=deleted)


def delete_job(session: Session, job_id: str, caller: Caller = TRUSTED) -> None:
    """Delete a finished job with its results (a queued or running one must be cancelled first)."""
    job = store.get_job(session, job_id, caller)
    if job.status not in FINISHED:
        raise Conflict(f"job {job_id} is {job.status}: cancel it first", field="status")
    if schedules := schedule_store.using(session, [job_id]):
        raise Conflict(
            f"job {job_id} is the template of schedule {schedules[0]}: delete that first", field="id"
        )
    store.delete_job(session, job_id)
    session.commit()


def purge_idempotency_keys(session: Session, hours: float) -> int:
    """Forget Idempotency-Keys older than `hours`; how many."""
    return idempotency.purge_expired(session, hours)


def purge_expired(session: Session, retention_days: float) -> int:
    """Delete the jobs that finished more than `retention_days` ago (none when it is 0); how many."""
    if retention_days <= 0:
        return 0
    expired = store.expired_jobs(session, utcnow() - timedelta(days=retention_days))
    templates = set(schedule_store.templates(session, expired))  # a schedule's template is kept
    expired = [job_id for job_id in expired if job_id not in templates]
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
    scored = job.done_pairs - job.cached_pairs  # the cache's pairs took no time
    if started is None or not scored:
        return None
    now = utcnow()
    if job.status == JobStatus.running:
        since = max(started, now - RATE_PERIOD)
        recent = batch_store.pairs_done_since(session, job.id, since)
        if recent:
            return recent / max((now - since).total_seconds(), 1e-3)
    return scored / max(((finished or now) - started).total_seconds(), 1e-3)


def job_view(session: Session, job: Job, stalls: StallCheck | None = None) -> JobOut:
    """What a client sees of a job: status, progress with rate and ETA (null while stalled),
    whether and why it stalled (when `stalls` is given), timestamps, options."""
    return JobOut.from_row(job, _rate(session, job), stalls.reason(job) if stalls else None)


def list_workers(session: Session, worker_timeout: float) -> list[WorkerOut]:
    """Workers seen in the last day, newest first, with what they serve and whether they are live."""
    return [
        WorkerOut(
            **seen.info.__dict__,
            last_seen=seen.last_seen,
            live=seen.live,
            characters_per_second=seen.characters_per_second,
        )
        for seen in heartbeats.seen_workers(session, worker_timeout)
    ]


def results_page(
    session: Session,
    job_id: str,
    query_id: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
    include_chunks: bool = False,
    caller: Caller = TRUSTED,
    cursors: Cursors = PROCESS_CURSORS,
) -> ResultsPage:
    """One page of ranked results (by query, then rank) and the cursor of the next page, if any,
    signed by `cursors` for this job; `include_chunks` adds every window's span and raw score."""
    options = _finished_job(session, job_id, query_id, caller).options
    after = cursors.decode(job_id, cursor) if cursor else None
    rows = store.results_page(session, job_id, query_id, options.top_k, after, limit + 1)
    last = rows[limit - 1] if len(rows) > limit else None
    return ResultsPage(
        results=[ResultOut.from_ranked(row, options, include_chunks) for row in rows[:limit]],
        next_cursor=cursors.encode(job_id, (last.query_pk, last.rank)) if last else None,
    )


def job_queries(
    session: Session, job_id: str, limit: int, query_id: str | None = None, caller: Caller = TRUSTED
) -> list[QueryOut]:
    """A job's first `limit` queries (or its query `query_id`) with their texts, in submission order."""
    store.get_job(session, job_id, caller)
    rows = store.query_texts(session, job_id, limit, query_id)
    return [QueryOut(id=client_id, text=text) for client_id, text in rows]


def document_texts(
    session: Session, job_id: str, query_id: str, document_ids: list[str], caller: Caller = TRUSTED
) -> dict[str, str]:
    """The whole texts of some of a query's documents (results carry only the winning window's)."""
    store.get_job(session, job_id, caller)
    return store.document_texts(session, job_id, query_id, document_ids)


# Rows per store query of an export: enough to keep round trips few, few enough that one page of
# rows (with their best-window texts) stays a few MB however large the job.
EXPORT_PAGE = 2000


def export_pages(
    session: Session,
    job_id: str,
    query_id: str | None = None,
    page_size: int = EXPORT_PAGE,
    caller: Caller = TRUSTED,
) -> Iterator[list[ResultOut]]:
    """Every ranked result of a finished job (the paged API's rows without per-window lists), a
    keyset page at a time. The checks run now, so a 404 or 409 is raised before anything streams."""
    options = _finished_job(session, job_id, query_id, caller).options

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


def _finished_job(session: Session, job_id: str, query_id: str | None, caller: Caller) -> JobOut:
    """The job whose results are asked for: `caller` may see it, it has finished, and it has
    `query_id` if given."""
    job = job_status(session, job_id, caller=caller)
    if job.status not in FINISHED:
        raise Conflict(f"job {job_id} is {job.status}; results are ready when it finishes", field="status")
    if query_id is not None and not store.has_query(session, job_id, query_id):
        raise NotFound(f"job {job_id} has no query {query_id!r}", field="query_id")
    return job
