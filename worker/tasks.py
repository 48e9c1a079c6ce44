"""Thin Celery tasks: each opens a session, calls one function of worker.pipeline, enqueues what
follows. Ids travel, never objects; the state lives in the database."""

from functools import lru_cache

from worker import pipeline
from worker.config import get_settings
from worker.db import session_scope
from worker.engine import Reranker, load_reranker
from worker.queue import FINALIZE_TASK, PLAN_TASK, SCORE_TASK, celery_app, enqueue


@lru_cache(maxsize=1)
def process_reranker() -> Reranker:
    """The model of this worker process, loaded once (eagerly by `rerankq worker`)."""
    settings = get_settings()
    return load_reranker(settings.model, settings.device, settings.dtype, settings.batch_tokens)


@celery_app.task(name=PLAN_TASK)
def plan_job(job_id: str) -> None:
    settings = get_settings()
    with session_scope(settings.database_url) as session:
        batches = pipeline.plan_job(session, job_id, settings.task_pairs)
    for batch_id in batches:
        enqueue(SCORE_TASK, batch_id)


@celery_app.task(name=SCORE_TASK)
def score_batch(batch_id: int) -> None:
    settings = get_settings()
    with session_scope(settings.database_url) as session:
        finished = pipeline.score_batch(
            session, batch_id, process_reranker(), settings.max_attempts, settings.max_windows
        )
    if finished is not None:
        enqueue(FINALIZE_TASK, finished)


@celery_app.task(name=FINALIZE_TASK)
def finalize_job(job_id: str) -> None:
    with session_scope(get_settings().database_url) as session:
        pipeline.finalize_job(session, job_id)
