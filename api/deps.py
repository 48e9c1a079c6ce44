"""Dependencies the routes receive: settings, a database session, the queue to hand work to; all
of them the app's own, as create_app was given them."""

from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated

import redis
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from worker.config import Settings
from worker.db import session_factory
from worker.migrate import require_schema
from worker.queue import JobQueue
from worker.service import Enqueue, Finished
from worker.stalls import StallCheck


def settings(request: Request) -> Settings:
    configured: Settings = request.app.state.settings
    return configured


def queue(request: Request) -> JobQueue:
    configured: JobQueue = request.app.state.queue
    return configured


def session(request: Request) -> Iterator[Session]:
    """A session on a migrated database (a 503 that says `rerankq migrate` otherwise)."""
    url = settings(request).database_url
    require_schema(url)
    db = session_factory(url)()
    try:
        yield db
    finally:
        db.close()


def enqueue(request: Request) -> Enqueue:
    return queue(request).enqueue_plan


def on_finished(request: Request) -> Finished:
    return queue(request).job_finished


@lru_cache
def _broker(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=5
    )  # a hung Redis: no hung scrape


def broker(request: Request) -> redis.Redis:
    """The broker's Redis, to read queue depths from."""
    return _broker(settings(request).broker_url)


def stalls(request: Request, db: Annotated[Session, Depends(session)]) -> StallCheck:
    """Why jobs stalled, looked up against this app's settings (live workers, broker)."""
    return StallCheck(db, settings(request))
