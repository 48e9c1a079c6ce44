"""Standing jobs: schedules that rerun a template job at the times a cron expression names, and
the tick (run by a worker each time `rerankq beat` rings) that submits the runs that are due.
The database decides what is due, so a restarted or second beat submits nothing twice."""

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from worker import schedule_store, service, store
from worker.config import Settings
from worker.cron import latest_due, next_due
from worker.errors import RerankError
from worker.models import Schedule, utcnow
from worker.schedule_store import ScheduleOut
from worker.spec import ScheduleSpec
from worker.tenancy import TRUSTED, Caller

log = logging.getLogger(__name__)
RUNS_SHOWN = 50  # the latest runs listed under a schedule


def create(session: Session, spec: ScheduleSpec, caller: Caller = TRUSTED) -> ScheduleOut:
    """A schedule of a template job `caller` may see, first due at the next time its cron names;
    it belongs to the job's tenant."""
    template = store.get_job(session, spec.job_id, caller)
    row = schedule_store.create(session, spec, next_due(spec.cron, spec.timezone, utcnow()), template.tenant)
    session.commit()
    return ScheduleOut.from_row(row, [])


def list_schedules(session: Session, limit: int, caller: Caller = TRUSTED) -> list[ScheduleOut]:
    return [ScheduleOut.from_row(row) for row in schedule_store.newest(session, limit, caller)]


def get(session: Session, schedule_id: str, caller: Caller = TRUSTED) -> ScheduleOut:
    """A schedule with its latest runs."""
    row = schedule_store.get(session, schedule_id, caller)
    return ScheduleOut.from_row(row, schedule_store.runs(session, schedule_id, RUNS_SHOWN))


def delete(session: Session, schedule_id: str, caller: Caller = TRUSTED) -> None:
    """Delete a schedule and its list of runs (their jobs stay)."""
    schedule_store.remove(session, schedule_id, caller)
    session.commit()


def pause(session: Session, schedule_id: str, paused: bool, caller: Caller = TRUSTED) -> ScheduleOut:
    """Pause a schedule, or resume it from the next time its cron names (missed times are skipped)."""
    row = schedule_store.get(session, schedule_id, caller)
    due = next_due(row.cron, row.timezone, utcnow())
    row = schedule_store.set_paused(session, schedule_id, paused, due, caller)
    session.commit()
    return get(session, row.id, caller)


def tick(
    session: Session, settings: Settings, enqueue: service.Enqueue, now: datetime | None = None
) -> list[str]:
    """Submit a run of every schedule due at `now`; the ids of the jobs submitted. One run fails
    alone: its error is kept on the run, and the next due time comes round as usual."""
    now = now or utcnow()
    submitted = []
    for schedule in schedule_store.due(session, now):
        if (job_id := _run(session, settings, enqueue, schedule, now)) is not None:
            submitted.append(job_id)
    return submitted


def _run(
    session: Session, settings: Settings, enqueue: service.Enqueue, schedule: Schedule, now: datetime
) -> str | None:
    """Claim the schedule's latest due time (times missed while no beat ran are not made up), then
    rerun its template; the new job's id, or None if another tick claimed it or it failed."""
    schedule_id, template = schedule.id, schedule.job_id
    due_at = latest_due(schedule.cron, schedule.timezone, now)
    run_id = schedule_store.claim_run(session, schedule_id, due_at)
    schedule_store.advance(session, schedule_id, next_due(schedule.cron, schedule.timezone, now))
    session.commit()
    if run_id is None:
        return None
    job_id = None
    try:
        stored = service.create_rerun(session, template, settings)
        job_id = stored.job_id
        schedule_store.record_run(session, run_id, job_id, None)
        session.commit()
        service.start_job(session, stored, enqueue)
        log.info("schedule %s: run due %s submitted job %s", schedule_id, due_at.isoformat(), job_id)
        return job_id
    except Exception as error:  # kept on the run: the next due time must come round regardless
        why = error.message if isinstance(error, RerankError) else f"{type(error).__name__}: {error}"
        session.rollback()
        schedule_store.record_run(session, run_id, job_id, why)
        session.commit()
        log.error("schedule %s: run due %s failed: %s", schedule_id, due_at.isoformat(), why)
        return None
