"""/v1/cache: how large the score cache is, and pruning it."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from api import deps
from api.schemas import CacheOut, CachePruned, ErrorOut
from worker import service

router = APIRouter(prefix="/v1/cache", tags=["cache"])
DbSession = Annotated[Session, Depends(deps.session)]
errors: dict[int | str, dict[str, Any]] = {422: {"model": ErrorOut}}


@router.get("", response_model=CacheOut)
def cache_size(session: DbSession) -> CacheOut:
    """Pairs whose scores are kept, and when the oldest and newest were kept."""
    return service.cache_size(session)


@router.delete("", response_model=CachePruned, responses=errors)
def prune_cache(
    session: DbSession,
    older_than_days: Annotated[float | None, Query(ge=0)] = None,
    collection: Annotated[str | None, Query(max_length=32)] = None,
) -> CachePruned:
    """Delete entries kept more than `older_than_days` ago and/or kept for jobs over `collection`."""
    return service.prune_cache(session, older_than_days, collection)
