"""create_app(): the FastAPI application, its routers and the one place errors become responses."""

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from api.docs import serve_docs
from api.limits import BodyReadTimeout
from api.metrics import ApiMetrics
from api.pages import routes as pages
from api.retention import retention
from api.routes import cache, collections, compat, health, job_files, jobs, metrics, schedules
from worker.config import Settings
from worker.errors import CONNECTION_ERRORS, JobError, RerankError
from worker.queue import JobQueue
from worker.spec import JOB_KINDS

log = logging.getLogger(__name__)
# Where a validation error's location starts with one of these, it is not part of the field's name.
_LOCATIONS = {"body", "query", "path", "header"}


def _field(loc: tuple[Any, ...], tagged: bool) -> str:
    """A validation error's field path; `tagged`: the body is a tagged union of job kinds."""
    parts = [str(part) for part in loc]
    if len(parts) > 1 and parts[0] in _LOCATIONS:
        parts = parts[1:]
    if tagged and parts and parts[0] in JOB_KINDS:  # which kind of job body it was read as
        parts = parts[1:] or ["body"]
    return ".".join(parts)


def _error(
    request: Request,
    status: int,
    message: str,
    field: str | None,
    details: list[dict[str, Any]],
    headers: Mapping[str, str] | None = None,
    **extra: str,
) -> JSONResponse:
    """Errors as the caller's client expects them: Cohere's {message} on its routes, rerankq's
    {error, field, details} everywhere else (TEI's /rerank included: its own errors say `error`)."""
    if request.url.path in compat.COHERE_ROUTES:
        body: dict[str, Any] = {"message": message, "field": field, **(extra or {})}
    else:
        body = {"error": message, "field": field, "details": details, **extra}
    return JSONResponse(body, status_code=status, headers=headers)


def _not_json(error: Any) -> str:
    where, why = error["loc"][-1], error.get("ctx", {}).get("error", error["msg"])
    return (
        f"body is not JSON (character {where}: {why}); "
        "send a JSONL body (one query per line) as content-type: application/x-ndjson"
    )


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if exc.errors()[0]["type"] == "json_invalid":  # most often JSONL sent as application/json
        message = _not_json(exc.errors()[0])
        return _error(request, 422, message, "body", [{"field": "body", "message": message}])
    tagged = request.url.path not in compat.SYNC_ROUTES
    details = [{"field": _field(e["loc"], tagged), "message": e["msg"]} for e in exc.errors()]
    first = details[0]
    return _error(request, 422, f"{first['field']}: {first['message']}", first["field"], details)


async def _domain_error(request: Request, exc: Exception) -> Response:
    """A domain error as JSON, or as a page on the page's own routes (an unknown job, no key)."""
    assert isinstance(exc, RerankError)
    if pages.is_page(request):
        return pages.error_page(request, exc)
    extra = {"job_id": exc.job_id} if isinstance(exc, JobError) else {}
    return _error(request, exc.status_code, exc.message, exc.field, [], exc.headers(), **extra)


# The framework's own errors that are about the request body (a malformed multipart form, a body
# that stopped arriving, one too large): their field is `body`.
_BODY_STATUSES = {400, 408, 411, 413, 415}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """The framework's errors (no such route, method not allowed, a malformed form, a stalled
    body) in the documented shape, with their headers (e.g. Allow)."""
    assert isinstance(exc, HTTPException)
    message = (
        f"{exc.detail}: {request.method} {request.url.path}" if exc.status_code in (404, 405) else exc.detail
    )
    field = "body" if exc.status_code in _BODY_STATUSES else None
    return _error(request, exc.status_code, str(message), field, [], headers=exc.headers)


def _stalled(request: Request, why: str) -> JSONResponse:
    return _error(request, 408, why, "body", [])


async def _client_left(request: Request, _: Exception) -> Response:
    """The client went away (or stalled: api.limits) before its body was complete: nothing was
    kept, and no one reads this answer."""
    return Response(status_code=400)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A fault of the API itself: logged with its traceback, answered in the documented shape."""
    logging.getLogger(__name__).error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _error(
        request, 500, f"internal error ({type(exc).__name__}); the API's log has its traceback", None, []
    )


# Seconds a client is told to wait when the database is unreachable (a restart takes about this long).
RETRY_AFTER = 5


async def _database_unreachable(request: Request, exc: Exception) -> JSONResponse:
    """A database outage is the server's, transient: 503 with Retry-After, never a traceback."""
    message = f"the database is unreachable ({type(exc).__name__}); retry shortly"
    return _error(request, 503, message, None, [], headers={"Retry-After": str(RETRY_AFTER)})


def _body_limit(
    limit: int,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """Refuse a declared body over `limit` bytes before it is read, so a huge upload cannot
    exhaust the API's memory."""

    async def check(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            message = f"request body is {length} bytes; the limit is {limit} (RERANK_MAX_REQUEST_BYTES)"
            return _error(request, 413, message, "body", [])
        return await call_next(request)

    return check


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API over `settings` (default: read from the environment); two apps of two Settings
    share nothing but the process."""
    settings = settings or Settings()
    if not settings.auth:
        log.warning(
            "RERANK_AUTH=off: every request is trusted, no API key is asked for (single-user setups only)"
        )
    app = FastAPI(
        title="rerankq",
        version="0.1.0",
        description="Queue-driven cross-encoder reranking: submit jobs, poll them, page through results.",
        lifespan=retention(settings),
        docs_url=None,  # served by api.docs from local files
        redoc_url=None,
    )
    serve_docs(app)
    app.include_router(job_files.router)  # before jobs: it takes POST /v1/jobs with a JSONL body
    app.include_router(jobs.router)
    app.include_router(collections.router)
    app.include_router(schedules.router)
    app.include_router(cache.router)
    app.include_router(compat.router)
    app.include_router(health.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")
    app.include_router(metrics.router)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_left)
    app.add_exception_handler(Exception, _unexpected)
    app.add_exception_handler(RerankError, _domain_error)
    for error in CONNECTION_ERRORS:
        app.add_exception_handler(error, _database_unreachable)
    app.middleware("http")(_body_limit(settings.max_request_bytes))
    app.add_middleware(BodyReadTimeout, seconds=settings.body_read_timeout, answer=_stalled)
    if settings.cors_origin_list:  # off unless origins are listed: no other site's page may call the API
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key"],
        )
    app.state.metrics = ApiMetrics(compat.SYNC_ROUTES)
    app.middleware("http")(app.state.metrics.middleware())  # outermost: it sees every answer
    app.state.settings = settings
    app.state.queue = JobQueue(settings)
    return app
