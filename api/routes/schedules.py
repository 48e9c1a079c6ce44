"""/v1/schedules: standing jobs, a template job rerun at the times a cron expression names
(submitted by `rerankq beat`'s ticks); each lists its runs."""

from typing import Annotated

from fastapi import APIRouter, Query

from api import deps
from api.schemas import ERROR_RESPONSES, ScheduleList, ScheduleOut, ScheduleSpec
from worker import schedules
from worker.spec import ParamStr

router = APIRouter(prefix="/v1/schedules", tags=["schedules"])
DbSession = deps.DbSession
errors = ERROR_RESPONSES
CallerDep = deps.CallerDep


@router.post("", status_code=201, response_model=ScheduleOut, responses=errors)
def create_schedule(spec: ScheduleSpec, session: DbSession, caller: CallerDep) -> ScheduleOut:
    """Rerun job `job_id` at each time `cron` names (five fields, read in `timezone`, default UTC)."""
    return schedules.create(session, spec, caller)


@router.get("", response_model=ScheduleList, responses=errors)
def list_schedules(
    session: DbSession, caller: CallerDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> ScheduleList:
    """Schedules, newest first."""
    return ScheduleList(schedules=schedules.list_schedules(session, limit, caller))


@router.get("/{schedule_id}", response_model=ScheduleOut, responses=errors)
def get_schedule(schedule_id: ParamStr, session: DbSession, caller: CallerDep) -> ScheduleOut:
    """A schedule with its latest runs (due time, the job each submitted and its status, or why none)."""
    return schedules.get(session, schedule_id, caller)


@router.delete("/{schedule_id}", status_code=204, responses=errors)
def delete_schedule(schedule_id: ParamStr, session: DbSession, caller: CallerDep) -> None:
    """Delete a schedule and its list of runs; the jobs they submitted stay."""
    schedules.delete(session, schedule_id, caller)


@router.post("/{schedule_id}/pause", response_model=ScheduleOut, responses=errors)
def pause_schedule(schedule_id: ParamStr, session: DbSession, caller: CallerDep) -> ScheduleOut:
    """Stop submitting runs until resumed."""
    return schedules.pause(session, schedule_id, True, caller)


@router.post("/{schedule_id}/resume", response_model=ScheduleOut, responses=errors)
def resume_schedule(schedule_id: ParamStr, session: DbSession, caller: CallerDep) -> ScheduleOut:
    """Submit runs again, from the next time the cron names (times missed while paused are skipped)."""
    return schedules.pause(session, schedule_id, False, caller)
