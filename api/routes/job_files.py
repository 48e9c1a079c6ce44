"""POST /v1/jobs with a JSONL body (`application/x-ndjson`): the job file format of `rerankq
submit`, one query with its documents per line, streamed into the database as it arrives. Options
and priority travel as query parameters."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import Scope

from api import deps
from api.schemas import JobOut
from api.streams import JSON_LINES, content_type, spool, store_lines
from worker import service
from worker.idempotency import RequestKey
from worker.jobs import NewJob
from worker.lifecycle import Priority
from worker.spec import JobOptions
from worker.uploads import JobUpload


class JsonLinesRoute(APIRoute):
    """A route that matches JSONL bodies only, so the same path serves JSON by another route."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match == Match.FULL and content_type(scope) not in JSON_LINES:
            return Match.NONE, {}
        return match, child


router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=JsonLinesRoute)


def _options(raw: str | None) -> JobOptions:
    try:
        return JobOptions.model_validate_json(raw) if raw else JobOptions()
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("options", *e["loc"])} for e in error.errors(include_url=False)]
        ) from error


@router.post("", status_code=202, response_model=JobOut, include_in_schema=False)
async def submit_job_file(
    request: Request,
    response: Response,
    session: deps.DbSession,
    settings: deps.SettingsDep,
    enqueue: deps.EnqueueDep,
    caller: deps.CallerDep,
    request_key: Annotated[RequestKey | None, Depends(deps.job_request_key)],
    options: str | None = None,
    priority: Priority | None = None,
) -> JobOut:
    """A streamed job file; a bad line rejects the job (422 naming the line), nothing is kept.
    A repeated Idempotency-Key answers 200 with the first request's job."""
    job_options = _options(options)
    body = await spool(request.stream(), settings.max_upload_bytes)

    def start() -> JobUpload:
        job = NewJob(session, settings, job_options, priority, None, False, caller, request_key)
        return JobUpload(job, settings)

    stored = await store_lines(start, body, session, settings.max_request_bytes)
    accepted = await run_in_threadpool(service.start_job, session, stored, enqueue)
    if accepted.replayed:
        response.status_code = 200
    return accepted.job
