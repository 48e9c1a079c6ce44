"""The reconciler: the database is the source of truth and the broker only a doorbell, so every
way the two can drift apart is repaired from the database's side. It runs periodically (`rerankq
reconcile`) and once at every worker start; two running at once do no harm (each step is a guarded
update, and a duplicate message is harmless because claiming a batch is guarded)."""

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker import leases, pipeline, store, turns, webhooks
from worker.lifecycle import BatchStatus, JobStatus, Priority
from worker.models import Batch, Job, utcnow
from worker.pipeline import Limits
from worker.queue import BrokerView

log = logging.getLogger(__name__)


class Doorbell(Protocol):
    """What the reconciler needs of the broker: what it holds, a way to ring again, and the
    finish hook of the jobs it closes."""

    def view(self, models: set[str]) -> BrokerView: ...
    def send_batch(self, batch_id: int, model: str, priority: Priority) -> None: ...
    def send_plan(self, job_id: str, priority: Priority) -> None: ...
    def send_webhook(self, job_id: str) -> None: ...
    def job_finished(self, job_id: str, webhook: bool) -> None: ...


@dataclass
class Reconciled:
    """What one pass repaired, by kind."""

    returned: list[int] = field(default_factory=list)  # running batches whose lease lapsed
    released: list[int] = field(default_factory=list)  # pending batches a lost follow-up never released
    resent: list[int] = field(default_factory=list)  # queued batches the broker had lost
    replanned: list[str] = field(default_factory=list)  # queued jobs whose plan message was lost
    finalized: list[str] = field(default_factory=list)  # jobs whose every batch is finished
    webhooks: list[str] = field(default_factory=list)  # finished jobs whose webhook was never tried

    def __bool__(self) -> bool:
        return any(getattr(self, kind) for kind in KINDS)

    def __str__(self) -> str:
        """One log line: how many of each kind, and which (the first few)."""
        parts = [
            f"{kind} {len(ids)} ({', '.join(map(str, ids[:5]))}{', …' if len(ids) > 5 else ''})"
            for kind in KINDS
            if (ids := getattr(self, kind))
        ]
        return "; ".join(parts) or "nothing to repair"


KINDS = ("returned", "released", "resent", "replanned", "finalized", "webhooks")
# A finished job's webhook is queued by its finish hook at once; one still untried this long after
# was lost (a worker killed between closing the job and queuing it, the broker down then).
WEBHOOK_GRACE = timedelta(seconds=60)


def reconcile(
    session: Session, limits: Limits, doorbell: Doorbell, starting: str | None = None
) -> Reconciled:
    """One pass: lapsed leases back to the queue (and, for the worker `starting` up, the batches
    of dead workers of its host at once), pending batches released, finished jobs finalized (all
    in the database first), then every queued batch or job the broker does not hold sent again.
    Attempts are not touched: they count claims, and a re-send is not one."""
    orphaned = leases.return_orphaned(session, starting) if starting else []
    done = Reconciled(returned=orphaned + leases.return_lapsed(session))
    session.commit()
    running = session.execute(
        select(Job.id, Job.done_pairs + Job.failed_pairs >= Job.total_pairs).where(
            Job.status == JobStatus.running
        )
    ).all()
    for job_id, all_scored in running:
        if not all_scored:
            done.released += turns.release_batches(session, job_id, limits.queued_batches)
        elif pipeline.finalize_job(session, job_id):  # False: a finalize task closed it meanwhile
            done.finalized.append(job_id)
            doorbell.job_finished(job_id, webhooks.wants_delivery(store.get_job(session, job_id)))
        session.commit()
    _ring_again(session, doorbell, done)
    untried = store.untried_webhooks(session, utcnow() - WEBHOOK_GRACE)
    session.commit()
    if untried:  # those whose task still waits (no worker free for a while) are not sent twice
        waiting = doorbell.view(set()).webhooks
        done.webhooks = [job_id for job_id in untried if job_id not in waiting]
    for job_id in done.webhooks:
        doorbell.send_webhook(job_id)
    if done:
        log.info("reconciled: %s", done)
    return done


def _ring_again(session: Session, doorbell: Doorbell, done: Reconciled) -> None:
    queued_batches = session.execute(
        select(Batch.id, Job.model, Job.priority)
        .join(Job, Job.id == Batch.job_id)
        .where(Batch.status == BatchStatus.queued, Job.status == JobStatus.running)
    ).all()
    queued_jobs = session.execute(select(Job.id, Job.priority).where(Job.status == JobStatus.queued)).all()
    session.commit()
    if not queued_batches and not queued_jobs:
        return
    held = doorbell.view({model for _, model, _ in queued_batches})
    for batch_id, model, priority in queued_batches:
        if batch_id not in held.batches:
            doorbell.send_batch(batch_id, model, Priority(priority))
            done.resent.append(batch_id)
    for job_id, priority in queued_jobs:
        if job_id not in held.plans:
            doorbell.send_plan(job_id, Priority(priority))
            done.replanned.append(job_id)
