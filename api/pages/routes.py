"""The page at `/`: submit a job, watch jobs run, read a job's ranked results as cards or a table,
look at a collection. Each view reads through worker.service (or the collection functions the
JSON API calls) and renders a template; forms, progress and the threshold slider talk to the JSON
API from static/page.js."""

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from api import deps
from api.pages.cards import Card, cards
from worker import evaluation, judgements, service
from worker.cursors import Cursors
from worker.errors import RerankError
from worker.evaluation import Evaluation
from worker.lifecycle import FINISHED, Priority
from worker.spec import ParamStr
from worker.tenancy import Caller
from worker.views import JobOut, QueryOut

HERE = Path(__file__).parents[1]
STATIC = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)
DbSession = deps.DbSession
# The caller comes from the page's cookie: the key entered at the top of every page.

# Results per page: a job of any size never loads more than this at once.
PAGE_SIZE = 50
# Queries listed in the picker; a job with more is reached by ?query_id= in the address.
PICKER_QUERIES = 500
# Collections offered in the submit form's picker and listed on the collections page, newest first.
PICKER_COLLECTIONS = 200
# Threshold presets by use case: recall first, the default, precision first.
PRESETS = (("Internal search", 0.4), ("Default", 0.5), ("Customer support", 0.75))


def _render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"presets": PRESETS, **context}, status_code=status)


def error_page(request: Request, error: RerankError) -> HTMLResponse:
    """A page's error (an unknown job, a bad cursor, no API key yet) as a page, not as JSON."""
    response = _render(
        request, "error.html", error.status_code, status_code=error.status_code, message=error.message
    )
    response.headers.update(error.headers())
    return response


def is_page(request: Request) -> bool:
    """Whether `request` was routed to one of the page's views (its errors are pages too)."""
    return request.scope.get("endpoint") in PAGE_VIEWS


@router.get("/", response_class=HTMLResponse)
def submit_page(request: Request, session: DbSession, caller: deps.CallerDep) -> HTMLResponse:
    collections = service.list_collections(session, PICKER_COLLECTIONS, caller)
    return _render(request, "submit.html", priorities=list(Priority), collections=collections)


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, session: DbSession, caller: deps.CallerDep) -> HTMLResponse:
    return _render(request, "jobs.html", jobs=service.list_jobs(session, None, 100, caller=caller))


@dataclass(frozen=True)
class ResultsView:
    """A finished job's page: the picker's queries, the picked one, its cards and the next cursor."""

    queries: list[QueryOut]
    query: QueryOut | None
    cards: list[Card]
    next_cursor: str | None


def _results(
    session: Session, job: JobOut, query_id: str | None, cursor: str | None, caller: Caller, cursors: Cursors
) -> ResultsView:
    """The results view of a job `caller` was already found to see."""
    queries = service.job_queries(session, job.id, PICKER_QUERIES, caller=caller)
    query_id = query_id or (queries[0].id if queries else None)
    if query_id is None:
        return ResultsView(queries, None, [], None)
    page = service.results_page(session, job.id, query_id, PAGE_SIZE, cursor, caller=caller, cursors=cursors)
    query = next((q for q in queries if q.id == query_id), None)
    query = query or service.job_queries(session, job.id, 1, query_id, caller)[0]  # one beyond the picker's
    shown = [result.document_id for result in page.results]
    texts = service.document_texts(session, job.id, query_id, shown, caller) if shown else {}
    return ResultsView(queries, query, cards(query.text, page.results, texts), page.next_cursor)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(
    request: Request,
    job_id: ParamStr,
    session: DbSession,
    caller: deps.CallerDep,
    cursors: Annotated[Cursors, Depends(deps.cursors)],
    query_id: ParamStr | None = None,
    cursor: ParamStr | None = None,
    view: Annotated[str, Query(pattern="^(cards|table)$")] = "cards",
) -> HTMLResponse:
    """A job: live progress while it runs; once finished, a page of one query's ranked results
    and, when it has judgements, a chart of whether reranking helped."""
    job = service.job_status(session, job_id, caller=caller)
    results = _results(session, job, query_id, cursor, caller, cursors) if job.status in FINISHED else None
    measured = _evaluation(session, job)
    return _render(
        request,
        "job.html",
        job=job,
        view=view,
        cursor=cursor,
        page_size=PAGE_SIZE,
        results=results,
        evaluation=measured,
        measures=MEASURES,
    )


# The evaluation chart's bars: Scores' field, and its label (Recall's cut-off is the API's default).
MEASURES = (("ndcg_at_10", "nDCG@10"), ("mrr_at_10", "MRR@10"), ("recall_at_k", "Recall@{k}"))


def _evaluation(session: Session, job: JobOut) -> Evaluation | None:
    """The finished job's evaluation (GET /v1/jobs/{id}/evaluation's defaults), if it has judgements."""
    if job.status not in FINISHED or not judgements.summary(session, job.id).judgements:
        return None
    return evaluation.evaluate(session, job.id)


@router.get("/collections", response_class=HTMLResponse)
def collections_page(request: Request, session: DbSession, caller: deps.CallerDep) -> HTMLResponse:
    collections = service.list_collections(session, PICKER_COLLECTIONS, caller)
    return _render(request, "collections.html", collections=collections)


@router.get("/collections/{collection_id}", response_class=HTMLResponse)
def collection_page(
    request: Request, collection_id: ParamStr, session: DbSession, caller: deps.CallerDep
) -> HTMLResponse:
    found = service.get_collection(session, collection_id, caller)
    return _render(request, "collection.html", collection=found)


PAGE_VIEWS = {submit_page, jobs_page, job_page, collections_page, collection_page}
