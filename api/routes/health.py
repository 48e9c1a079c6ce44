"""/healthz: is the database reachable, is the broker reachable."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api import deps
from api.schemas import Health
from worker.config import Settings
from worker.db import get_engine
from worker.errors import SchemaMissing
from worker.migrate import require_schema
from worker.queue import JobQueue

router = APIRouter(tags=["health"])


def _database(url: str) -> None:
    """Answers now (the schema check is remembered once passed; this query is not)."""
    with get_engine(url).connect() as connection:
        connection.execute(text("SELECT 1"))
    require_schema(url)


def _probe(check: Any) -> str:
    try:
        check()
        return "ok"
    except SchemaMissing as error:
        return error.message
    except Exception as error:
        return f"unreachable: {type(error).__name__}"


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(
    settings: Annotated[Settings, Depends(deps.settings)], queue: Annotated[JobQueue, Depends(deps.queue)]
) -> JSONResponse:
    """200 when the database answers at the newest schema and the broker answers, 503 otherwise."""
    body = {
        "database": _probe(lambda: _database(settings.database_url)),
        "broker": _probe(lambda: queue.app.connection_for_write().ensure_connection(max_retries=1)),
    }
    healthy = all(value == "ok" for value in body.values())
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", **body}, status_code=200 if healthy else 503
    )
