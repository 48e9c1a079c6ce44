"""/healthz (database and its schema, broker, live workers) and /v1/workers (every worker seen lately)."""

from fastapi import APIRouter
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api import deps
from api.schemas import ErrorOut, Health, WorkerList, WorkerOut
from worker import service
from worker.broker import broker_reachable
from worker.db import get_engine, session_scope
from worker.errors import SchemaMissing
from worker.migrate import require_schema

router = APIRouter(tags=["health"])
SettingsDep = deps.SettingsDep


def _database(url: str, worker_timeout: float) -> tuple[str, list[WorkerOut]]:
    """The database's state and the live workers it knows of. The query answers now; the schema
    check is remembered once passed."""
    try:
        with get_engine(url).connect() as connection:
            connection.execute(text("SELECT 1"))
        require_schema(url)
        with session_scope(url) as session:
            return "ok", [w for w in service.list_workers(session, worker_timeout) if w.live]
    except SchemaMissing as error:
        return error.message, []
    except Exception as error:
        return f"unreachable: {type(error).__name__}", []


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(settings: SettingsDep) -> JSONResponse:
    """200 when the database answers at the newest schema and the broker answers, 503 otherwise;
    with the live workers."""
    database, workers = _database(settings.database_url, settings.worker_timeout)
    broker = "ok" if broker_reachable(settings.broker_url) else "unreachable"
    healthy = database == broker == "ok"
    body = Health(status="ok" if healthy else "degraded", database=database, broker=broker, workers=workers)
    return JSONResponse(jsonable_encoder(body), status_code=200 if healthy else 503)


@router.get("/v1/workers", response_model=WorkerList, responses={503: {"model": ErrorOut}})
def list_workers(session: deps.DbSession, settings: SettingsDep, _: deps.CallerDep) -> WorkerList:
    """Workers seen in the last day (from their heartbeats), newest first, live or not (any key)."""
    return WorkerList(workers=service.list_workers(session, settings.worker_timeout))
