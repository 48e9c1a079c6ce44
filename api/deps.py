"""Dependencies the routes receive: settings, a database session, the queue to hand work to."""

from collections.abc import Iterator

from sqlalchemy.orm import Session

from worker.config import Settings, get_settings
from worker.db import session_factory
from worker.queue import enqueue_plan
from worker.service import Enqueue


def settings() -> Settings:
    return get_settings()


def session() -> Iterator[Session]:
    db = session_factory(get_settings().database_url)()
    try:
        yield db
    finally:
        db.close()


def enqueue() -> Enqueue:
    return enqueue_plan
