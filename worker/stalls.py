"""Honest status: why a job with work left has had no batch scored for a while."""

from functools import cached_property

from sqlalchemy.orm import Session

from worker import batch_store, heartbeats
from worker.broker import broker_reachable
from worker.config import Settings
from worker.lifecycle import JobStatus
from worker.models import Job, aware, utcnow


class StallCheck:
    """Answers for any number of jobs, looking up the live workers and the broker at most once."""

    def __init__(self, session: Session, settings: Settings) -> None:
        self._session, self._settings = session, settings

    @cached_property
    def live_models(self) -> set[str]:
        return heartbeats.live_models(self._session, self._settings.worker_timeout)

    @cached_property
    def broker_up(self) -> bool:
        return broker_reachable(self._settings.broker_url)

    def reason(self, job: Job) -> str | None:
        """Why `job` has had no batch scored for RERANK_STALL_SECONDS, or None if it has not stalled:
        no live worker serves its model, the broker is down, or the workers are busy elsewhere."""
        if job.status not in (JobStatus.queued, JobStatus.running):
            return None
        if job.status == JobStatus.running and job.done_pairs + job.failed_pairs >= job.total_pairs:
            return None  # scored; finalizing
        scored_at = batch_store.last_scored_at(self._session, job.id)
        last = aware(scored_at) or aware(job.started_at or job.created_at)
        idle = (utcnow() - last).total_seconds()
        if idle < self._settings.stall_seconds:
            return None
        if job.model not in self.live_models:
            return f"no live worker serves model {job.model}"
        if not self.broker_up:
            return "the broker (Redis) is unreachable"
        return f"no batch scored for {idle:.0f} s; the live workers are busy with other jobs"
