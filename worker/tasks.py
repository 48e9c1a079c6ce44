"""Thin Celery tasks: each opens a session, calls one function of worker.pipeline, enqueues what
follows. Ids travel, never objects; the state lives in the database. Everything a task reads comes
from the Settings its Tasks were built with. A database outage is waited out, never a failure."""

import logging
import time
from collections.abc import Callable
from functools import cached_property

from sqlalchemy.orm import Session

from worker import leases, pipeline, schedules, store, webhooks
from worker.config import Settings
from worker.db import session_scope
from worker.engine import Reranker, load_configured
from worker.errors import is_connection_error
from worker.lifecycle import Priority
from worker.overlap import InHand, ModelGate
from worker.pipeline import Limits
from worker.queue import FINALIZE_TASK, PLAN_TASK, SCHEDULES_TASK, SCORE_TASK, WEBHOOK_TASK, JobQueue
from worker.speed import Speed

log = logging.getLogger(__name__)
# The longest wait between two tries at an unreachable database: a try is one connection attempt,
# cheap, and work resumes at most this long after the database is back.
MAX_RETRY_PAUSE = 5.0


def with_database_retry(what: str, call: Callable[[], None], give_up_after: float) -> None:
    """Run `call`, waiting out a database outage with backoff (1 s doubling to 5 s) for up to
    `give_up_after` seconds; then give up quietly: the batch's lease lapses (or it stays queued)
    and the reconciler hands it out again. No attempt is spent on an outage."""
    give_up = time.monotonic() + give_up_after
    pause = 1.0
    while True:
        try:
            return call()
        except Exception as error:
            if not is_connection_error(error):
                raise
            if time.monotonic() + pause > give_up:
                log.error("%s: database unreachable; left to the reconciler (%s)", what, error)
                return None
            log.warning("%s: database unreachable, retrying in %.0fs (%s)", what, pause, error)
            time.sleep(pause)
            pause = min(pause * 2, MAX_RETRY_PAUSE)


class Tasks:
    """A worker's tasks over one Settings: registered on the Celery app `app`, which the worker
    runs; the model is loaded once (eagerly by `rerankq worker`); `name` holds its leases. Tasks
    may run on several threads at once (RERANK_WORKER_BATCHES): `gate` gives them the model in
    turn, by priority, `in_hand` keeps a batch from being scored twice at once, and `speed` times
    their forward passes (heartbeats publish it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limits = Limits.from_settings(settings)
        self.queue = JobQueue(settings)
        self.app = self.queue.app
        self.name = leases.new_holder_name()
        self.gate = ModelGate()
        self.in_hand = InHand()
        self.speed = Speed()
        self.app.task(name=PLAN_TASK, shared=False)(self.plan_job)
        self.app.task(name=SCORE_TASK, shared=False)(self.score_batch)
        self.app.task(name=FINALIZE_TASK, shared=False)(self.finalize_job)
        self.app.task(name=WEBHOOK_TASK, shared=False)(self.deliver_webhook)
        self.app.task(name=SCHEDULES_TASK, shared=False)(self.submit_due_runs)
        self.webhook_policy = webhooks.WebhookPolicy.from_settings(settings)

    @cached_property
    def reranker(self) -> Reranker:
        return load_configured(self.settings)

    def _retrying(self, what: str, call: Callable[[], None]) -> None:
        with_database_retry(what, call, self.settings.database_retry_seconds)

    def plan_job(self, job_id: str, priority: Priority = Priority.normal) -> None:
        def plan() -> None:
            with session_scope(self.settings.database_url) as session:
                job = store.get_job(session, job_id)
                if job.synchronous and job.model in self.settings.model_aliases:
                    # A client waits: the whole job in this one task, so it meets at most one batch
                    # of other jobs in a worker's hands, not one per step (plan, each batch, finalize).
                    if pipeline.run_job(
                        session,
                        job_id,
                        self.reranker,
                        self.limits,
                        holder=self.name,
                        gate=self.gate,
                        speed=self.speed,
                    ):
                        self._finished(session, job_id)
                    return
                own = (
                    pipeline.identity_of(self.reranker) if job.model in self.settings.model_aliases else None
                )
                followups = pipeline.plan_job(session, job_id, self.limits, own)
            self.queue.enqueue_batches(followups.batches, followups.model, priority)
            if followups.finalize is not None:  # nothing to score
                self._finalize(followups.finalize)

        self._retrying(f"plan job {job_id}", plan)

    def score_batch(self, batch_id: int, priority: Priority = Priority.normal) -> None:
        def score() -> None:
            with session_scope(self.settings.database_url) as session:
                followups = pipeline.score_batch(
                    session, batch_id, self.reranker, self.limits, self.name, self.gate, self.speed
                )
                # enqueued before the release commits (see Followups)
                self.queue.enqueue_batches(followups.batches, followups.model, priority)
            if followups.finalize is not None:
                self.queue.enqueue(FINALIZE_TASK, followups.finalize, priority=priority)

        with self.in_hand.take(batch_id) as taken:
            if taken:
                self._retrying(f"batch {batch_id}", score)
            else:
                log.info("batch %d is already in hand here: this delivery is left alone", batch_id)

    def finalize_job(self, job_id: str) -> None:
        self._retrying(f"finalize job {job_id}", lambda: self._finalize(job_id))

    def _finalize(self, job_id: str) -> None:
        with session_scope(self.settings.database_url) as session:
            if pipeline.finalize_job(session, job_id):
                self._finished(session, job_id)

    def _finished(self, session: Session, job_id: str) -> None:
        """The finish hook, run by the one call that closed the job (a finalize task delivered
        again, or racing the reconciler, closes nothing and runs nothing)."""
        self.queue.job_finished(job_id, webhooks.wants_delivery(store.get_job(session, job_id)))

    def deliver_webhook(self, job_id: str) -> None:
        with session_scope(self.settings.database_url) as session:
            retry_in = webhooks.deliver(session, job_id, self.webhook_policy)
        if retry_in is not None:
            self.queue.enqueue(WEBHOOK_TASK, job_id, priority=Priority.high, countdown=retry_in)

    def submit_due_runs(self) -> None:
        """A beat's tick: rerun the template of every schedule that is due (worker.schedules)."""

        def submit() -> None:
            with session_scope(self.settings.database_url) as session:
                schedules.tick(session, self.settings, self.queue.enqueue_plan)

        self._retrying("scheduled runs", submit)
