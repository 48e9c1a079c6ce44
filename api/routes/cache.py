"""/v1/cache: how large the score cache is, and pruning it. The cache is shared by every tenant
(a pair scored for one is reused for another with the same texts), so both routes are an admin's."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api import deps
from api.schemas import ERROR_RESPONSES, CacheOut, CachePruned, ErrorOut
from worker import service
from worker.spec import ParamStr

router = APIRouter(prefix="/v1/cache", tags=["cache"], dependencies=[Depends(deps.admin)])
DbSession = deps.DbSession
errors: dict[int | str, dict[str, Any]] = {**ERROR_RESPONSES, 403: {"model": ErrorOut}}


@router.get("", response_model=CacheOut, responses=errors)
def cache_size(session: DbSession) -> CacheOut:
    """Pairs whose scores are kept, and when the oldest and newest were kept."""
    return service.cache_size(session)


@router.delete("", response_model=CachePruned, responses=errors)
def prune_cache(
    session: DbSession,
    older_than_days: Annotated[float | None, Query(ge=0, le=36500)] = None,
    collection: Annotated[ParamStr | None, Query(max_length=32)] = None,
) -> CachePruned:
    """Delete entries kept more than `older_than_days` ago and/or kept for jobs over `collection`."""
    return service.prune_cache(session, older_than_days, collection)
