"""Every read and write of schedules and their runs; a schedule belongs to its template job's
tenant and is seen by that tenant alone (and admins). Rows become ScheduleOut and ScheduleRunOut
here, once."""

from collections.abc import Sequence
from datetime import datetime
from uuid import uuid4

from pydantic import BaseModel, Field
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from worker.errors import NotFound
from worker.lifecycle import JobStatus
from worker.models import Job, Schedule, ScheduleRun, aware
from worker.spec import ScheduleSpec
from worker.store import dialect_insert
from worker.tenancy import TRUSTED, Caller


class ScheduleRunOut(BaseModel):
    due_at: datetime = Field(description="The time the cron expression named (UTC).")
    job_id: str | None = Field(description="The job it submitted; null if none could be (see error).")
    status: JobStatus | None = Field(description="That job's status now.")
    error: str | None = Field(description="Why the run could not be submitted, if it could not.")
    created_at: datetime


class ScheduleOut(BaseModel):
    id: str
    name: str | None
    job_id: str = Field(description="The template job each run reruns.")
    cron: str
    timezone: str
    paused: bool
    next_due_at: datetime = Field(description="When the next run is due (UTC).")
    created_at: datetime
    runs: list[ScheduleRunOut] | None = Field(
        None, description="The latest runs, newest first (GET /v1/schedules/{id} only)."
    )

    @classmethod
    def from_row(cls, row: Schedule, runs: list[ScheduleRunOut] | None = None) -> "ScheduleOut":
        return cls(
            id=row.id,
            name=row.name,
            job_id=row.job_id,
            cron=row.cron,
            timezone=row.timezone,
            paused=row.paused,
            next_due_at=aware(row.next_due_at),
            created_at=aware(row.created_at),
            runs=runs,
        )


def create(session: Session, spec: ScheduleSpec, next_due_at: datetime, tenant: str | None) -> Schedule:
    row = Schedule(
        tenant=tenant,
        id=uuid4().hex,
        name=spec.name,
        job_id=spec.job_id,
        cron=spec.cron,
        timezone=spec.timezone,
        paused=False,
        next_due_at=next_due_at,
    )
    session.add(row)
    session.flush()
    return row


def get(session: Session, schedule_id: str, caller: Caller = TRUSTED) -> Schedule:
    """A schedule `caller` may see; another tenant's is as missing as one that never existed."""
    row = session.get(Schedule, schedule_id)
    if row is None or not caller.sees(row.tenant):
        raise NotFound(f"no schedule with id {schedule_id!r}", field="id")
    return row


def newest(session: Session, limit: int, caller: Caller = TRUSTED) -> Sequence[Schedule]:
    chosen = caller.visible(select(Schedule), Schedule.tenant)
    return session.scalars(chosen.order_by(Schedule.created_at.desc()).limit(limit)).all()


def runs(session: Session, schedule_id: str, limit: int) -> list[ScheduleRunOut]:
    """A schedule's latest runs, newest due time first, with their jobs' status now."""
    stmt = (
        select(ScheduleRun, Job.status)
        .outerjoin(Job, Job.id == ScheduleRun.job_id)
        .where(ScheduleRun.schedule_id == schedule_id)
        .order_by(ScheduleRun.due_at.desc())
        .limit(limit)
    )
    return [
        ScheduleRunOut(
            due_at=aware(run.due_at),
            job_id=run.job_id,
            status=JobStatus(status) if status else None,
            error=run.error,
            created_at=aware(run.created_at),
        )
        for run, status in session.execute(stmt)
    ]


def remove(session: Session, schedule_id: str, caller: Caller = TRUSTED) -> None:
    get(session, schedule_id, caller)
    session.execute(delete(ScheduleRun).where(ScheduleRun.schedule_id == schedule_id))
    session.execute(delete(Schedule).where(Schedule.id == schedule_id))


def set_paused(
    session: Session, schedule_id: str, paused: bool, next_due_at: datetime, caller: Caller = TRUSTED
) -> Schedule:
    row = get(session, schedule_id, caller)
    row.paused, row.next_due_at = paused, next_due_at
    session.flush()
    return row


def due(session: Session, now: datetime) -> Sequence[Schedule]:
    """Schedules not paused whose next run is due at `now`."""
    stmt = select(Schedule).where(Schedule.paused.is_(False), Schedule.next_due_at <= now)
    return session.scalars(stmt.order_by(Schedule.next_due_at)).all()


def claim_run(session: Session, schedule_id: str, due_at: datetime) -> int | None:
    """Claim a schedule's run of `due_at`: its id, or None when another tick (a second beat, a
    re-delivered task) claimed it first; the unique (schedule, due_at) decides, not a lock."""
    stmt = dialect_insert(session, ScheduleRun).values(schedule_id=schedule_id, due_at=due_at)
    stmt = stmt.on_conflict_do_nothing(index_elements=["schedule_id", "due_at"]).returning(ScheduleRun.id)
    return session.execute(stmt).scalar_one_or_none()


def advance(session: Session, schedule_id: str, next_due_at: datetime) -> None:
    """Move a schedule's next due time on (never back: two ticks may both move it)."""
    stmt = update(Schedule).where(Schedule.id == schedule_id, Schedule.next_due_at < next_due_at)
    session.execute(stmt.values(next_due_at=next_due_at).execution_options(synchronize_session=False))


def record_run(session: Session, run_id: int, job_id: str | None, error: str | None) -> None:
    stmt = update(ScheduleRun).where(ScheduleRun.id == run_id).values(job_id=job_id, error=error)
    session.execute(stmt.execution_options(synchronize_session=False))


def using(session: Session, job_ids: Sequence[str]) -> list[str]:
    """The schedules whose template is one of `job_ids`."""
    return list(session.scalars(select(Schedule.id).where(Schedule.job_id.in_(job_ids))))


def templates(session: Session, job_ids: Sequence[str]) -> list[str]:
    """Those of `job_ids` that are a schedule's template (kept by retention)."""
    return list(session.scalars(select(Schedule.job_id.distinct()).where(Schedule.job_id.in_(job_ids))))
