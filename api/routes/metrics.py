"""GET /metrics: Prometheus' text format."""

from typing import Annotated

import redis
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api import deps
from worker.stats import service_stats
from worker.tenancy import Caller

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
def metrics(
    request: Request,
    session: deps.DbSession,
    settings: deps.SettingsDep,
    broker: Annotated[redis.Redis, Depends(deps.broker)],
    _: Annotated[Caller, Depends(deps.admin)],
) -> Response:
    """Jobs by status, pairs submitted/scored/failed, queue depth per priority, the oldest queued
    batch's age, this process's HTTP requests and synchronous rerank latency. Every tenant's
    numbers, so an admin key only (Prometheus sends it as a bearer token)."""
    stats = service_stats(session, broker, settings.queue)
    return Response(request.app.state.metrics.render(stats), media_type=CONTENT_TYPE_LATEST)
