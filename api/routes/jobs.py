"""/v1/jobs: submit, list, look at, cancel, page through results and export them as JSONL, CSV or
Parquet."""

import itertools
import shutil
import tempfile
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from api import deps
from api.limits import CheckedRoute
from api.schemas import ERROR_RESPONSES, BatchErrors, Evaluation, JobList, JobOut, JudgementsOut, ResultsPage
from api.streams import spool, store_lines
from worker import evaluation, export, service, sync
from worker.cursors import Cursors
from worker.idempotency import RequestKey
from worker.judgements import QrelsUpload
from worker.lifecycle import JobStatus
from worker.spec import AnyJobSpec, ParamStr
from worker.stalls import StallCheck
from worker.tenancy import Caller

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=CheckedRoute)
DbSession = deps.DbSession
Stalls = Annotated[StallCheck, Depends(deps.stalls)]
CallerDep = deps.CallerDep
errors = ERROR_RESPONSES
MAX_WAIT_SECONDS = 60  # under the usual proxy's idle timeout


# The JSONL form of POST /v1/jobs (api.routes.job_files) described beside the JSON one.
JSONL_BODY: dict[str, Any] = {
    "requestBody": {
        "content": {
            "application/x-ndjson": {
                "schema": {
                    "type": "string",
                    "description": 'One query per line: {"id", "text", "documents": [{"id", "text", '
                    '"metadata"?}]} (the `rerankq submit` format); options and priority as query parameters',
                }
            }
        }
    },
    "parameters": [
        {
            "name": "options",
            "in": "query",
            "required": False,
            "description": 'JSONL bodies only: the job\'s options as JSON, e.g. {"top_k":10}',
            "schema": {"type": "string"},
        },
        {
            "name": "priority",
            "in": "query",
            "required": False,
            "description": "JSONL bodies only: high | normal | low",
            "schema": {"type": "string", "enum": ["high", "normal", "low"]},
        },
    ],
}


REPLAYED: dict[int | str, dict[str, Any]] = {
    200: {"model": JobOut, "description": "The job an earlier request with this Idempotency-Key created"}
}


@router.post(
    "", status_code=202, response_model=JobOut, responses={**REPLAYED, **errors}, openapi_extra=JSONL_BODY
)
def submit_job(
    spec: AnyJobSpec,
    session: DbSession,
    settings: deps.SettingsDep,
    enqueue: deps.EnqueueDep,
    caller: CallerDep,
    request_key: Annotated[RequestKey | None, Depends(deps.job_request_key)],
    response: Response,
) -> JobOut:
    """Accept a rerank job: queries with their documents, or queries over a collection
    (`{"collection": id, ...}`); a JSONL body (`application/x-ndjson`, one query with its documents
    per line) is streamed. Poll GET /v1/jobs/{id} until it is completed. With an
    `Idempotency-Key`, a repeat of the request answers 200 with the job the first one created."""
    accepted = service.accept_job(session, spec, settings, enqueue, caller=caller, request_key=request_key)
    if accepted.replayed:
        response.status_code = 200
    return accepted.job


@router.get("", response_model=JobList, responses=errors)
def list_jobs(
    session: DbSession,
    stalls: Stalls,
    caller: CallerDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> JobList:
    """The caller's jobs (an admin key: everyone's), newest first, optionally of one status."""
    return JobList(jobs=service.list_jobs(session, status, limit, stalls, caller))


@router.get("/{job_id}", response_model=JobOut, responses=errors)
async def get_job(
    job_id: ParamStr,
    session: DbSession,
    stalls: Stalls,
    caller: CallerDep,
    settings: deps.SettingsDep,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="Hold the answer until the job finishes, for up to this many seconds (a long"
            " poll: one request instead of many); 0 answers at once",
        ),
    ] = 0,
) -> JobOut:
    """Status, progress (counts, rate, ETA), whether and why it stalled, and timestamps of a job."""

    def read() -> JobOut:
        try:
            return service.job_status(session, job_id, stalls, caller)
        finally:
            session.rollback()  # no transaction is held while the request waits

    return await sync.held_until_finished(job_id, read, settings.broker_url, wait)


@router.post("/{job_id}/cancel", response_model=JobOut, responses=errors)
def cancel_job(
    job_id: ParamStr,
    session: DbSession,
    on_finished: Annotated[service.Finished, Depends(deps.on_finished)],
    caller: CallerDep,
) -> JobOut:
    """Stop a job; results scored before the cancel stay available."""
    return service.cancel_job(session, job_id, on_finished, caller)


@router.delete("/{job_id}", status_code=204, responses=errors)
def delete_job(job_id: ParamStr, session: DbSession, caller: CallerDep) -> None:
    """Delete a finished job with its results (409 while it runs: cancel it first)."""
    service.delete_job(session, job_id, caller)


@router.post("/{job_id}/rerun", status_code=202, response_model=JobOut, responses=errors)
def rerun_job(
    job_id: ParamStr,
    session: DbSession,
    settings: deps.SettingsDep,
    enqueue: deps.EnqueueDep,
    caller: CallerDep,
) -> JobOut:
    """Submit the job again as a new job (its `rerun_of` names this one): the same queries,
    documents or collection (its documents now), options, model and judgements."""
    return service.rerun_job(session, job_id, settings, enqueue, caller)


QRELS_BODY: dict[str, Any] = {
    "requestBody": {
        "content": {
            "application/x-ndjson": {
                "schema": {
                    "type": "string",
                    "description": '{"query_id", "document_id", "relevance"} per line',
                }
            },
            "text/plain": {
                "schema": {
                    "type": "string",
                    "description": "TREC qrels: query_id iteration document_id relevance",
                }
            },
        }
    }
}


@router.post("/{job_id}/qrels", response_model=JudgementsOut, responses=errors, openapi_extra=QRELS_BODY)
async def upload_qrels(
    job_id: ParamStr,
    request: Request,
    session: DbSession,
    settings: deps.SettingsDep,
    caller: CallerDep,
) -> JudgementsOut:
    """Add relevance judgements to a job, streamed: JSONL (application/x-ndjson) or a TREC qrels
    file (text/plain). A bad line refuses the upload (422 naming the line); judgements stored
    before stay; a pair judged again takes its new relevance."""
    line_format = "trec" if request.headers.get("content-type", "").startswith("text/plain") else "jsonl"
    body = await spool(request.stream(), settings.max_upload_bytes)
    return await store_lines(
        partial(QrelsUpload, session, job_id, line_format, caller=caller),
        body,
        session,
        settings.max_request_bytes,
    )


@router.get("/{job_id}/evaluation", response_model=Evaluation, responses=errors)
def evaluate_job(
    job_id: ParamStr,
    session: DbSession,
    caller: CallerDep,
    k: Annotated[int, Query(ge=1, le=10000, description="The cut-off of recall_at_k.")] = 100,
    min_relevance: Annotated[
        int, Query(description="The least relevance counted relevant (MRR, recall).")
    ] = 1,
) -> Evaluation:
    """nDCG@10, MRR@10 and Recall@k (ir-measures) of the submitted order and of the reranked order,
    per query and mean, against the job's judgements (404 when it has none)."""
    return evaluation.evaluate(session, job_id, k, min_relevance, caller)


@router.get("/{job_id}/errors", response_model=BatchErrors, responses=errors)
def batch_errors(
    job_id: ParamStr, session: DbSession, caller: CallerDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> BatchErrors:
    """The job's failed batches and why each failed (its `error` names the first)."""
    return BatchErrors(errors=service.batch_errors(session, job_id, limit, caller))


@router.get(
    "/{job_id}/results", response_model=ResultsPage, response_model_exclude_unset=True, responses=errors
)
def get_results(
    job_id: ParamStr,
    session: DbSession,
    caller: CallerDep,
    cursors: Annotated[Cursors, Depends(deps.cursors)],
    query_id: ParamStr | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
    cursor: ParamStr | None = None,
    include_chunks: bool = False,
) -> ResultsPage:
    """Ranked results, ordered by query then rank, a page at a time; include_chunks=true adds
    every window's span and raw score."""
    return service.results_page(session, job_id, query_id, limit, cursor, include_chunks, caller, cursors)


_EXPORTS = {"jsonl": "application/x-ndjson", "csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


def _export(
    session: Session, job_id: str, query_id: str | None, kind: str, caller: Caller
) -> StreamingResponse:
    """Check the job now (errors are answered as JSON), then stream its rows a store page at a time."""
    pages = service.export_pages(session, job_id, query_id, caller=caller)
    return StreamingResponse(
        export.text_pages(export.records(pages), csv_format=kind == "csv"),
        media_type=_EXPORTS[kind],
        headers={"Content-Disposition": f'attachment; filename="{job_id}.{kind}"'},
    )


def _streamed(kind: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {_EXPORTS[kind]: {}}}, **errors}


@router.get("/{job_id}/results.jsonl", response_class=StreamingResponse, responses=_streamed("jsonl"))
def export_jsonl(
    job_id: ParamStr, session: DbSession, caller: CallerDep, query_id: ParamStr | None = None
) -> StreamingResponse:
    """Every ranked result of a finished job, one JSON object per line (the fields of /results
    without chunk_scores), by query then rank; top_k applies."""
    return _export(session, job_id, query_id, "jsonl", caller)


@router.get("/{job_id}/results.csv", response_class=StreamingResponse, responses=_streamed("csv"))
def export_csv(
    job_id: ParamStr, session: DbSession, caller: CallerDep, query_id: ParamStr | None = None
) -> StreamingResponse:
    """Every ranked result of a finished job as CSV: query_id, document_id, rank, raw_score, score,
    relevant, by query then rank; top_k applies."""
    return _export(session, job_id, query_id, "csv", caller)


@router.get("/{job_id}/results.parquet", response_class=FileResponse, responses=_streamed("parquet"))
def export_parquet(
    job_id: ParamStr, session: DbSession, caller: CallerDep, query_id: ParamStr | None = None
) -> FileResponse:
    """The rows of results.csv as Parquet. A Parquet file ends with its footer, so it is written to
    a temporary file first (a row group at a time, in flat memory), sent, then deleted."""
    pages = service.export_pages(session, job_id, query_id, caller=caller)
    folder = Path(tempfile.mkdtemp(prefix="rerankq-export-"))
    try:
        path = folder / f"{job_id}.parquet"
        export.write_results(itertools.chain.from_iterable(export.records(pages)), path)
    except BaseException:
        shutil.rmtree(folder)
        raise
    return FileResponse(
        path,
        media_type=_EXPORTS["parquet"],
        filename=path.name,
        background=BackgroundTask(shutil.rmtree, folder),
    )
