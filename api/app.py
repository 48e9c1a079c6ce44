"""create_app(): the FastAPI application, its routers and the one place errors become responses."""

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.docs import serve_docs
from api.retention import retention
from api.routes import collections, health, job_files, jobs
from worker.config import Settings
from worker.errors import CONNECTION_ERRORS, RerankError
from worker.queue import JobQueue
from worker.spec import JOB_KINDS

# Where a validation error's location starts with one of these, it is not part of the field's name.
_LOCATIONS = {"body", "query", "path", "header"}


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(part) for part in loc]
    if len(parts) > 1 and parts[0] in _LOCATIONS:
        parts = parts[1:]
    if parts and parts[0] in JOB_KINDS:  # which kind of job body it was read as
        parts = parts[1:] or ["body"]
    return ".".join(parts)


def _not_json(error: Any) -> dict[str, Any]:
    where, why = error["loc"][-1], error.get("ctx", {}).get("error", error["msg"])
    message = (
        f"body is not JSON (character {where}: {why}); "
        "send a JSONL body (one query per line) as content-type: application/x-ndjson"
    )
    return {"error": message, "field": "body", "details": [{"field": "body", "message": message}]}


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if exc.errors()[0]["type"] == "json_invalid":  # most often JSONL sent as application/json
        return JSONResponse(_not_json(exc.errors()[0]), status_code=422)
    details = [{"field": _field(e["loc"]), "message": e["msg"]} for e in exc.errors()]
    first = details[0]
    body = {"error": f"{first['field']}: {first['message']}", "field": first["field"], "details": details}
    return JSONResponse(body, status_code=422)


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RerankError)
    return JSONResponse(
        {"error": exc.message, "field": exc.field, "details": []}, status_code=exc.status_code
    )


# Seconds a client is told to wait when the database is unreachable (a restart takes about this long).
RETRY_AFTER = 5


async def _database_unreachable(_: Request, exc: Exception) -> JSONResponse:
    """A database outage is the server's, transient: 503 with Retry-After, never a traceback."""
    body = {"error": f"the database is unreachable ({type(exc).__name__}); retry shortly", "field": None}
    return JSONResponse({**body, "details": []}, status_code=503, headers={"Retry-After": str(RETRY_AFTER)})


def _body_limit(
    limit: int,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """Refuse a declared body over `limit` bytes before it is read, so a huge upload cannot
    exhaust the API's memory."""

    async def check(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            message = f"request body is {length} bytes; the limit is {limit} (RERANK_MAX_REQUEST_BYTES)"
            return JSONResponse({"error": message, "field": "body", "details": []}, status_code=413)
        return await call_next(request)

    return check


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API over `settings` (default: read from the environment); two apps of two Settings
    share nothing but the process."""
    settings = settings or Settings()
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
    app.include_router(health.router)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(RerankError, _domain_error)
    for error in CONNECTION_ERRORS:
        app.add_exception_handler(error, _database_unreachable)
    app.middleware("http")(_body_limit(settings.max_request_bytes))
    app.state.settings = settings
    app.state.queue = JobQueue(settings)
    return app
