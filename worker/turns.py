"""Whose batches go on the queue next. A tenant keeps at most `queued_batches` batches on the queue
per model and priority, however many jobs it runs, so one tenant's ten overnight jobs take the same
share of the workers as another tenant's one; within a tenant's share its jobs take turns. A job
of no tenant (RERANK_AUTH=off, `rerankq run`) has a share of its own, as every job had before
tenants. Each scored batch releases the next ones, so the queue stays short and a newcomer's
batches are among the next few a worker takes."""

from collections import Counter
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from worker import store
from worker.lifecycle import OPEN_BATCH, BatchStatus, JobStatus
from worker.models import Batch, Job, utcnow


def sharing_jobs(session: Session, job: Job) -> list[str]:
    """The running jobs whose batches share a window with `job`'s, oldest first: its tenant's jobs
    of the same model and priority (just itself when it has no tenant)."""
    stmt = select(Job.id).where(Job.status == JobStatus.running)
    if job.tenant is None:
        stmt = stmt.where(Job.id == job.id)
    else:
        stmt = stmt.where(Job.tenant == job.tenant, Job.model == job.model, Job.priority == job.priority)
    return list(session.scalars(stmt.order_by(Job.created_at, Job.id)))


def take_turns(
    jobs: Sequence[str], open_now: Counter[str], pending: Counter[str], wanted: int
) -> Counter[str]:
    """How many batches of each job to release: one at a time to the job with the fewest on the
    queue (the oldest on a tie) that has some left."""
    open_now, given = Counter(open_now), Counter[str]()
    for _ in range(wanted):
        waiting = [job for job in jobs if pending[job] > given[job]]
        if not waiting:
            break
        job = min(waiting, key=lambda j: (open_now[j], jobs.index(j)))
        given[job] += 1
        open_now[job] += 1
    return given


def _counts(session: Session, jobs: Sequence[str]) -> tuple[Counter[str], Counter[str]]:
    """Each job's batches on the queue (queued or running) and its pending ones, in one statement."""
    stmt = (
        select(Batch.job_id, Batch.status, func.count())
        .where(Batch.job_id.in_(jobs), Batch.status.in_([*OPEN_BATCH, BatchStatus.pending]))
        .group_by(Batch.job_id, Batch.status)
    )
    open_now, pending = Counter[str](), Counter[str]()
    for job_id, status, count in session.execute(stmt):
        (pending if status == BatchStatus.pending else open_now)[job_id] += count
    return open_now, pending


def release_batches(session: Session, job_id: str, queued_batches: int) -> list[int]:
    """Move pending batches of `job_id`'s share to queued until `queued_batches` of them are on the
    queue; the ids to enqueue (of the same model and priority as `job_id`'s, maybe of another job)."""
    jobs = sharing_jobs(session, store.get_job(session, job_id))
    if not jobs:
        return []
    open_now, pending = _counts(session, jobs)
    wanted = queued_batches - sum(open_now.values())
    if wanted <= 0:
        return []
    given = take_turns(jobs, open_now, pending, wanted)
    picked: list[int] = []
    for job, count in given.items():
        next_ids = (
            select(Batch.id)
            .where(Batch.job_id == job, Batch.status == BatchStatus.pending)
            .order_by(Batch.number)
            .limit(count)
            .with_for_update(skip_locked=True)
        )
        # picked first, then updated: as a subquery of the UPDATE, PostgreSQL may re-run the LIMIT
        # per row and release more than asked
        picked += session.scalars(next_ids)
    if not picked:
        return []
    stmt = (
        update(Batch)
        .where(Batch.id.in_(picked), Batch.status == BatchStatus.pending)
        .values(status=BatchStatus.queued, queued_at=utcnow())
        .returning(Batch.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(session.scalars(stmt))
