"""Thin Celery tasks: each opens a session, calls one function of worker.pipeline, enqueues what
follows. Ids travel, never objects; the state lives in the database."""

from functools import lru_cache

from worker import pipeline
from worker.config import get_settings
from worker.db import session_scope
from worker.engine import Reranker, load_reranker
from worker.lifecycle import Priority
from worker.pipeline import Limits
from worker.queue import FINALIZE_TASK, PLAN_TASK, SCORE_TASK, celery_app, enqueue


@lru_cache(maxsize=1)
def process_reranker() -> Reranker:
    """The model of this worker process, loaded once (eagerly by `rerankq worker`)."""
    settings = get_settings()
    return load_reranker(settings.model, settings.device, settings.dtype, settings.batch_tokens)


@celery_app.task(name=PLAN_TASK)
def plan_job(job_id: str, priority: Priority = Priority.normal) -> None:
    settings = get_settings()
    with session_scope(settings.database_url) as session:
        batches = pipeline.plan_job(session, job_id, Limits.from_settings(settings))
    for batch_id in batches:
        enqueue(SCORE_TASK, batch_id, priority, priority=priority)


@celery_app.task(name=SCORE_TASK)
def score_batch(batch_id: int, priority: Priority = Priority.normal) -> None:
    settings = get_settings()
    with session_scope(settings.database_url) as session:
        followups = pipeline.score_batch(
            session, batch_id, process_reranker(), Limits.from_settings(settings)
        )
        for next_batch in followups.batches:  # enqueued before the release commits (see Followups)
            enqueue(SCORE_TASK, next_batch, priority, priority=priority)
    if followups.finalize is not None:
        enqueue(FINALIZE_TASK, followups.finalize, priority=priority)


@celery_app.task(name=FINALIZE_TASK)
def finalize_job(job_id: str) -> None:
    with session_scope(get_settings().database_url) as session:
        pipeline.finalize_job(session, job_id)
