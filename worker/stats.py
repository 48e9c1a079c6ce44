"""The service as an operator sees it, read at scrape time from where the truth lives: jobs and
pairs from the database (the same numbers from every API process), queue depth from Redis."""

from dataclasses import dataclass
from datetime import timedelta

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker.errors import BROKER_ERRORS
from worker.lifecycle import BatchStatus, JobStatus, Priority
from worker.models import Batch, CachedScore, Job, Worker, aware, utcnow
from worker.queue import model_queue, priority_lists


@dataclass(frozen=True)
class QueueDepth:
    """Tasks waiting on one Redis list: a queue (the base one, `model` empty: plan, finalize and
    webhook tasks; or a model's batch queue) at one priority."""

    queue: str
    model: str
    priority: Priority
    tasks: int


@dataclass(frozen=True)
class ServiceStats:
    jobs: dict[str, int]  # by status
    pairs_submitted: int
    pairs_scored: int
    pairs_failed: int
    queue_depth: list[QueueDepth] | None  # None: the broker is unreachable
    oldest_queued_batch_seconds: float | None  # None: no batch is waiting
    score_cache_entries: int


def service_stats(session: Session, broker: redis.Redis, queue: str) -> ServiceStats:
    rows = session.execute(
        select(
            Job.status,
            func.count(),
            func.coalesce(func.sum(Job.total_pairs), 0),
            func.coalesce(func.sum(Job.done_pairs), 0),
            func.coalesce(func.sum(Job.failed_pairs), 0),
        ).group_by(Job.status)
    ).all()
    oldest = session.scalar(select(func.min(Batch.queued_at)).where(Batch.status == BatchStatus.queued))
    oldest = aware(oldest)
    return ServiceStats(
        jobs={status: count for status, count, *_ in rows},
        pairs_submitted=sum(int(row[2]) for row in rows),
        pairs_scored=sum(int(row[3]) for row in rows),
        pairs_failed=sum(int(row[4]) for row in rows),
        queue_depth=_queue_depth(broker, queue, _models(session)),
        oldest_queued_batch_seconds=None if oldest is None else (utcnow() - oldest).total_seconds(),
        score_cache_entries=session.scalar(select(func.count()).select_from(CachedScore)) or 0,
    )


def _models(session: Session) -> set[str]:
    """The models whose batch queues may hold work: those of open jobs and of workers seen today."""
    jobs = select(Job.model).where(Job.status.in_([JobStatus.queued, JobStatus.running]))
    workers = select(Worker.model).where(Worker.last_seen >= utcnow() - timedelta(days=1))
    return set(session.scalars(jobs.union(workers)))


def _queue_depth(broker: redis.Redis, queue: str, models: set[str]) -> list[QueueDepth] | None:
    """The length of every priority list of the base queue and of each model's queue."""
    queues = [(queue, ""), *sorted((model_queue(queue, model), model) for model in models)]
    lists = [
        (name, model, priority, key)
        for name, model in queues
        for priority, key in priority_lists(name).items()
    ]
    try:
        with broker.pipeline() as pipe:
            for *_, key in lists:
                pipe.llen(key)
            depths = pipe.execute()
    except BROKER_ERRORS:
        return None
    return [
        QueueDepth(name, model, priority, int(depth))
        for (name, model, priority, _), depth in zip(lists, depths, strict=True)
    ]
