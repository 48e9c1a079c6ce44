"""Thin Celery tasks: each opens a session, calls one function of worker.pipeline, enqueues what
follows. Ids travel, never objects; the state lives in the database. Everything a task reads comes
from the Settings its Tasks were built with."""

from functools import cached_property

from worker import pipeline
from worker.config import Settings
from worker.db import session_scope
from worker.engine import Reranker, load_reranker
from worker.lifecycle import Priority
from worker.pipeline import Limits
from worker.queue import FINALIZE_TASK, PLAN_TASK, SCORE_TASK, JobQueue


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

    @cached_property
    def reranker(self) -> Reranker:
        settings = self.settings
        return load_reranker(settings.model, settings.device, settings.dtype, settings.batch_tokens)

    def plan_job(self, job_id: str, priority: Priority = Priority.normal) -> None:
        with session_scope(self.settings.database_url) as session:
            batches = pipeline.plan_job(session, job_id, self.limits)
        for batch_id in batches:
            self.queue.enqueue(SCORE_TASK, batch_id, priority, priority=priority)

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
