"""The three steps a job goes through, as plain functions over a session: plan it into batches,
score one batch, finalize (rank per query). Celery tasks and the embedded `rerankq run` both call
these; each is safe to repeat when a task is delivered twice."""

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from worker import (
    batch_store,
    batching,
    collection,
    heartbeats,
    leases,
    metrics,
    ranking,
    score_cache,
    store,
    turns,
)
from worker.config import Settings
from worker.db import on_postgres
from worker.engine import Reranker
from worker.errors import is_connection_error
from worker.leases import Lease
from worker.lifecycle import JobStatus, Priority
from worker.models import Job, utcnow
from worker.overlap import InLine, ModelGate, alone
from worker.score_cache import ModelIdentity
from worker.scoring import ScoredDocument, score_pairs
from worker.spec import JobOptions
from worker.speed import PassTimer, Speed

log = logging.getLogger(__name__)
LARGE_JOB_PAIRS = 10_000  # a job this large refreshes the database's statistics when it is done


@dataclass(frozen=True)
class Limits:
    """What one job may take: the model seconds a batch aims at (0: a fixed number of pairs),
    pairs per batch while no worker's speed is known (or always) and at most, batches of its
    tenant's share on the queue at once (worker.turns), deliveries of a batch, windows read per
    document, seconds a claim on a batch lasts without renewal."""

    task_seconds: float
    task_pairs: int
    task_max_pairs: int
    queued_batches: int
    max_attempts: int
    max_windows: int
    lease_seconds: float
    worker_timeout: float  # a worker unseen this long is not asked what weights it runs

    @classmethod
    def from_settings(cls, settings: Settings) -> "Limits":
        return cls(
            settings.task_seconds,
            settings.task_pairs,
            settings.task_max_pairs,
            settings.tenant_queued_batches,
            settings.max_attempts,
            settings.max_windows,
            settings.lease_seconds,
            settings.worker_timeout,
        )


@dataclass(frozen=True)
class Followups:
    """What a planned or scored batch leaves to do: batches to put on the queue of `model`, and the
    job to finalize when that batch was its last. The release of those batches is left
    uncommitted: the caller enqueues them first and commits after, so a worker killed in between
    loses nothing (the release rolls back and the reconciler releases them again; a batch
    enqueued but still pending can be claimed)."""

    batches: list[int]
    finalize: str | None
    model: str


def identity_of(reranker: Reranker) -> ModelIdentity:
    """What this process's scores depend on: the model's name as jobs and heartbeats give it
    (load_configured names it so), its weights and their dtype."""
    return ModelIdentity(reranker.name, reranker.fingerprint, str(reranker.dtype).removeprefix("torch."))


def plan_job(session: Session, job_id: str, limits: Limits, own: ModelIdentity | None = None) -> Followups:
    """Split a queued job into batches and mark it running; the batches to put on the queue now
    (up to its tenant's `limits.queued_batches`; each scored batch releases the next). Pairs whose
    scores are in the cache are not batched. `own`: the model this process serves, when it serves
    the job's model (under either of its names). The job's row is locked first: a second plan task
    (the reconciler's re-send) finds it locked and leaves at once."""
    job = store.get_job(session, job_id)
    if not store.try_lock_job(session, job_id):  # being planned right now
        return Followups([], None, job.model)
    if not on_postgres(session):
        # SQLite locks no row: its one writer's lock, taken (or waited for) now, so what the plan
        # reads next is current, not a snapshot a concurrent commit makes stale ("database is locked")
        store.lock_job_status(session, job_id)
    session.refresh(job)
    if job.status == JobStatus.queued:
        if job.collection_id is not None:
            collection.snapshot_pairs(session, job)
        key = _cache_key(session, job, limits, own)
        if key is not None:
            score_cache.hold_for_plan(session)
        cut = _cut(session, job, limits)
        batched = batching.plan_batches(session, job, key, cut)
        cached = job.total_pairs - batched
        if key is not None:
            score_cache.reuse(session, job, key, cached)
        store.transition(session, job_id, JobStatus.running)
        log.info(
            "job %s planned: %d pairs, %d of them from the cache; batches of %s",
            job_id,
            job.total_pairs,
            cached,
            cut,
        )
        if job.done_pairs >= job.total_pairs:  # nothing left to score: no batch would finish it
            session.commit()
            return Followups([], job_id, job.model)
    batches = []
    if store.get_job(session, job_id).status == JobStatus.running:
        # a plan task delivered again enqueues the open batches again (a duplicate is harmless)
        batches = batch_store.open_batches(session, job_id) + turns.release_batches(
            session, job_id, limits.queued_batches
        )
    session.commit()
    return Followups(batches, None, job.model)


def score_batch(
    session: Session,
    batch_id: int,
    reranker: Reranker,
    limits: Limits,
    holder: str = "local",
    gate: ModelGate | None = None,
    speed: Speed | None = None,
) -> Followups:
    """Score one batch under a lease held by `holder` and store its results; then release the job's
    next batch, or hand back the job to finalize once its last batch is finished. A batch claimed
    more than `limits.max_attempts` times is marked failed (a batch that kills its worker must not
    loop forever). A database outage is raised, never recorded as the batch's failure. With a
    `gate`, the forward passes wait their turn among the batches this process holds, by the job's
    priority; with a `speed`, their time is recorded in it."""
    lease = Lease(holder, limits.lease_seconds)
    claim = leases.claim_batch(session, batch_id, lease)  # committed with the read of its pairs
    if claim is None:  # finished, or held by a live worker: only the follow-ups are left
        return _followups(session, batch_store.batch_job_id(session, batch_id), limits)
    job_id, attempts = claim.job_id, claim.attempts
    job = store.get_job(session, job_id)
    if job.status != JobStatus.running:  # cancelled since this batch was queued
        batch_store.skip_batch(session, batch_id, job_id)
    elif attempts > limits.max_attempts:
        log.error("batch %d of job %s failed: delivered %d times", batch_id, job_id, attempts)
        batch_store.fail_batch(session, batch_id, job_id, f"gave up after {limits.max_attempts} attempts")
    else:
        try:
            options = JobOptions.model_validate(job.options)
            in_line = gate.line(Priority(job.priority)) if gate else alone
            _score(session, batch_id, job, reranker, options, limits.max_windows, lease, in_line, speed)
        except Exception as error:  # a batch that cannot be scored must not leave its job hanging
            if is_connection_error(error):
                raise
            session.rollback()
            log.exception("batch %d of job %s failed", batch_id, job_id)
            batch_store.fail_batch(session, batch_id, job_id, f"{type(error).__name__}: {error}")
    session.commit()
    return _followups(session, job_id, limits)


def _followups(session: Session, job_id: str, limits: Limits) -> Followups:
    """The batches this one's end releases (of its job, or of another job of its tenant's share:
    also when its job is done or cancelled) and the job to finalize if this was its last."""
    job = store.get_job(session, job_id)
    finalize = job_id if _all_scored(session, job_id) else None
    return Followups(turns.release_batches(session, job_id, limits.queued_batches), finalize, job.model)


def _cut(session: Session, job: Job, limits: Limits) -> batching.Cut:
    """Batches of `limits.task_seconds` at the slowest live worker's speed, so one takes about that
    long wherever it runs (a synchronous request waits behind one); of `limits.task_pairs` pairs
    while no worker of the job's model has measured its speed."""
    speed = (
        heartbeats.slowest_speed(session, job.model, limits.worker_timeout) if limits.task_seconds else None
    )
    if speed is None:
        return batching.Cut(limits.task_pairs)
    return batching.Cut(limits.task_max_pairs, max(1, round(speed * limits.task_seconds)))


def _cache_key(session: Session, job: Job, limits: Limits, own: ModelIdentity | None) -> str | None:
    """The key of the job's entries in the score cache; None when it does not use the cache (its
    options opt out). The key needs the weights of the model that will score the rest: this
    process's, or the live workers' of the job's model (none live, or differing weights: no cache
    for this job)."""
    options = JobOptions.model_validate(job.options)
    if not options.cache:
        return None
    identity = own or heartbeats.serving(session, job.model, limits.worker_timeout)
    if identity is None:
        log.info(
            "job %s: score cache not used: no live worker of %s says what weights it runs", job.id, job.model
        )
        return None
    return score_cache.scoring_key(identity, options)


def _score(
    session: Session,
    batch_id: int,
    job: Job,
    reranker: Reranker,
    options: JobOptions,
    max_windows: int,
    lease: Lease,
    in_line: InLine,
    speed: Speed | None,
) -> None:
    job_id = job.id
    started, tokens_before = time.perf_counter(), reranker.tokens_scored
    rows = batch_store.batch_pairs(session, batch_id)
    session.commit()  # no transaction held while the model runs
    bind = session.get_bind()
    assert isinstance(bind, Engine)
    # renewed while the batch waits for and runs on the model, not while results are written: the
    # writes lock the batch row
    with leases.renewing(bind, batch_id, lease):
        pairs = [(pair.query, pair.document) for pair in rows]
        timer = PassTimer(in_line)
        scored = score_pairs(reranker, pairs, options, max_windows, timer.line)
    if speed is not None:
        speed.record(sum(len(pair.document) for pair in rows), timer.seconds)
    if store.lock_job_status(session, job_id) != JobStatus.running:  # cancelled while this batch ran
        batch_store.skip_batch(session, batch_id, job_id)
        return
    _record_max_length(session, job, reranker, options)
    results = [_result_row(pair.document_pk, pair.query_pk, s) for pair, s in zip(rows, scored, strict=True)]
    store.mark_truncated(
        session, {pair.query_pk for pair, s in zip(rows, scored, strict=True) if s.query_truncated}
    )
    batch_store.record_results(session, batch_id, job_id, results, lease.holder)
    seconds = time.perf_counter() - started
    tokens = reranker.tokens_scored - tokens_before  # other batches' too, when they overlap this one
    metrics.observe_batch(len(rows), tokens, seconds, reranker.tokens_scored)
    log.info(
        "job %s batch %d: %d pairs (%d windows) on %s in %.2fs (%.0f pairs/s)",
        job_id,
        batch_id,
        len(rows),
        sum(len(s.windows) for s in scored),
        reranker.device,
        seconds,
        len(rows) / max(seconds, 1e-9),
    )


def _record_max_length(session: Session, job: Job, reranker: Reranker, options: JobOptions) -> None:
    """Put on the job the tokens per pair its model reads: the API cannot know the model's limit.
    Written once: a job read with it set (every batch after the first) costs no statement."""
    if job.effective_max_length is not None:
        return
    max_length = reranker.effective_max_length(options.max_length)
    if store.record_effective_max_length(session, job.id, max_length) and max_length < options.max_length:
        log.info("job %s: max_length %d cut to %d, the model's limit", job.id, options.max_length, max_length)


def _result_row(document_pk: int, query_pk: int, scored: ScoredDocument) -> batch_store.ScoredRow:
    best = scored.windows[scored.best]
    return batch_store.ScoredRow(
        document_pk=document_pk,
        query_pk=query_pk,
        raw_score=scored.raw_score,
        windows_read=len(scored.windows),
        best_window=scored.best,
        best_start=best.start,
        best_end=best.end,
        windows=[[w.start, w.end, w.raw_score] for w in scored.windows] if len(scored.windows) > 1 else None,
    )


def _all_scored(session: Session, job_id: str) -> bool:
    job = store.get_job(session, job_id)
    return job.status == JobStatus.running and job.done_pairs + job.failed_pairs >= job.total_pairs


def finalize_job(session: Session, job_id: str) -> bool:
    """Rank every query's results and close the job: completed, or failed if no pair was scored.
    True only for the one call that closed it (however many finalize it at once: the finalize
    task, the reconciler, a delivery again), so its finish hook runs once."""
    job = store.get_job(session, job_id)
    store.lock_job_status(session, job_id)  # a second finalize waits here, then finds it closed
    session.refresh(job)
    if not _all_scored(session, job_id):
        session.commit()
        return False
    kept = score_cache.fill(session, job, utcnow())
    ranking.rank_results(session, job)
    total, done, failed, cached = job.total_pairs, job.done_pairs, job.failed_pairs, job.cached_pairs
    if done == 0 and total > 0:
        cause = batch_store.batch_errors(session, job_id, limit=1)
        why = f"every batch failed; the first: {cause[0].error}" if cause else "every batch failed"
        closed = store.transition(session, job_id, JobStatus.failed, error=why)
    else:
        closed = store.transition(session, job_id, JobStatus.completed)
    if closed and total >= LARGE_JOB_PAIRS:
        store.refresh_statistics(session)
    session.commit()
    if closed:
        log.info(
            "job %s finalized: %d done (%d from the cache), %d failed; %d pairs added to the cache",
            job_id,
            done,
            cached,
            failed,
            kept,
        )
    return closed


def run_job(
    session: Session,
    job_id: str,
    reranker: Reranker,
    limits: Limits,
    on_batch: Callable[[], None] = lambda: None,
    holder: str = "local",
    gate: ModelGate | None = None,
    speed: Speed | None = None,
) -> bool:
    """Every step of a job in this process, in the order a worker meets them (no broker):
    `rerankq run`, a worker's synchronous jobs and the tests use it. True when this call closed
    the job (its finish hook is then the caller's to run)."""
    planned = plan_job(session, job_id, limits, identity_of(reranker))
    queued, last = deque(planned.batches), planned.finalize
    while queued:
        followups = score_batch(session, queued.popleft(), reranker, limits, holder, gate, speed)
        queued.extend(followups.batches)
        session.commit()
        on_batch()
        last = followups.finalize or last
    return last is not None and finalize_job(session, last)
