"""The service as an operator sees it, read at scrape time from where the truth lives: jobs and
pairs from the database (the same numbers from every API process), queue depth from Redis."""

from dataclasses import dataclass

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker.lifecycle import BatchStatus, Priority
from worker.models import Batch, CachedScore, Job, aware, utcnow
from worker.queue import priority_lists


@dataclass(frozen=True)
class ServiceStats:
    jobs: dict[str, int]  # by status
    pairs_submitted: int
    pairs_scored: int
    pairs_failed: int
    queue_depth: dict[Priority, int]  # tasks waiting in Redis, by priority
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
    lists = priority_lists(queue)
    with broker.pipeline() as pipe:
        for name in lists.values():
            pipe.llen(name)
        depths = pipe.execute()
    return ServiceStats(
        jobs={status: count for status, count, *_ in rows},
        pairs_submitted=sum(int(row[2]) for row in rows),
        pairs_scored=sum(int(row[3]) for row in rows),
        pairs_failed=sum(int(row[4]) for row in rows),
        queue_depth={priority: int(depth) for priority, depth in zip(lists, depths, strict=True)},
        oldest_queued_batch_seconds=None if oldest is None else (utcnow() - oldest).total_seconds(),
        score_cache_entries=session.scalar(select(func.count()).select_from(CachedScore)) or 0,
    )
