"""/healthz: is the database reachable, is the broker reachable."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.orm import Session

from api import deps
from api.schemas import Health
from worker.queue import JobQueue

router = APIRouter(tags=["health"])


def _probe(check: Any) -> str:
    try:
        check()
        return "ok"
    except Exception as error:
        return f"unreachable: {type(error).__name__}"


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(
    session: Annotated[Session, Depends(deps.session)], queue: Annotated[JobQueue, Depends(deps.queue)]
) -> JSONResponse:
    """200 when both the database and the broker answer, 503 otherwise."""
    body = {
        "database": _probe(lambda: session.execute(text("SELECT 1"))),
        "broker": _probe(lambda: queue.app.connection_for_write().ensure_connection(max_retries=1)),
    }
    healthy = all(value == "ok" for value in body.values())
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", **body}, status_code=200 if healthy else 503
    )
