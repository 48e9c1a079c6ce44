"""Thin Celery tasks: each opens a session, calls one function of worker.pipeline, enqueues what
follows. Ids travel, never objects; the state lives in the database. Everything a task reads comes
from the Settings its Tasks were built with."""

from functools import cached_property

from worker import pipeline, store, webhooks
from worker.config import Settings
from worker.db import session_scope
from worker.engine import Reranker, load_reranker
from worker.lifecycle import FINISHED, Priority
from worker.pipeline import Limits
from worker.queue import FINALIZE_TASK, PLAN_TASK, SCORE_TASK, WEBHOOK_TASK, JobQueue


class Tasks:
    """A worker's tasks over one Settings: registered on the Celery app `app`, which the worker
    runs; the model is loaded once (eagerly by `rerankq worker`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limits = Limits.from_settings(settings)
        self.queue = JobQueue(settings)
        self.app = self.queue.app
        self.app.task(name=PLAN_TASK, shared=False)(self.plan_job)
        self.app.task(name=SCORE_TASK, shared=False)(self.score_batch)
        self.app.task(name=FINALIZE_TASK, shared=False)(self.finalize_job)
        self.app.task(name=WEBHOOK_TASK, shared=False)(self.deliver_webhook)
        self.webhook_policy = webhooks.WebhookPolicy.from_settings(settings)

    @cached_property
    def reranker(self) -> Reranker:
        settings = self.settings
        return load_reranker(settings.model, settings.device, settings.dtype, settings.batch_tokens)

    def plan_job(self, job_id: str, priority: Priority = Priority.normal) -> None:
        with session_scope(self.settings.database_url) as session:
            if store.get_job(session, job_id).synchronous:
                # A client waits: the whole job in this one task, so it meets at most one batch of
                # other jobs in a worker's hands, not one per step (plan, each batch, finalize).
                pipeline.run_job(session, job_id, self.reranker, self.limits)
                batches = []
            else:
                batches = pipeline.plan_job(session, job_id, self.limits)
        for batch_id in batches:
            self.queue.enqueue(SCORE_TASK, batch_id, priority, priority=priority)
        if not batches:
            self._announce_if_finished(job_id)

    def score_batch(self, batch_id: int, priority: Priority = Priority.normal) -> None:
        with session_scope(self.settings.database_url) as session:
            followups = pipeline.score_batch(session, batch_id, self.reranker, self.limits)
            for next_batch in followups.batches:  # enqueued before the release commits (see Followups)
                self.queue.enqueue(SCORE_TASK, next_batch, priority, priority=priority)
        if followups.finalize is not None:
            self.queue.enqueue(FINALIZE_TASK, followups.finalize, priority=priority)

    def finalize_job(self, job_id: str) -> None:
        with session_scope(self.settings.database_url) as session:
            pipeline.finalize_job(session, job_id)
        self._announce_if_finished(job_id)

    def _announce_if_finished(self, job_id: str) -> None:
        """Tell waiting clients and queue the webhook of a finished job; also when a task is
        delivered again, so a notice or webhook lost with a killed worker is sent now."""
        with session_scope(self.settings.database_url) as session:
            job = store.get_job(session, job_id)
            finished, webhook = job.status in FINISHED, webhooks.wants_delivery(job)
        if finished:
            self.queue.job_finished(job_id, webhook)

    def deliver_webhook(self, job_id: str) -> None:
        with session_scope(self.settings.database_url) as session:
            retry_in = webhooks.deliver(session, job_id, self.webhook_policy)
        if retry_in is not None:
            self.queue.enqueue(WEBHOOK_TASK, job_id, priority=Priority.high, countdown=retry_in)
