"""Dependencies the routes receive: settings, a database session, the queue to hand work to; all
of them the app's own, as create_app was given them."""

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session

from worker.config import Settings
from worker.db import session_factory
from worker.queue import JobQueue
from worker.service import Enqueue


def settings(request: Request) -> Settings:
    configured: Settings = request.app.state.settings
    return configured


def queue(request: Request) -> JobQueue:
    configured: JobQueue = request.app.state.queue
    return configured


def session(request: Request) -> Iterator[Session]:
    db = session_factory(settings(request).database_url)()
    try:
        yield db
    finally:
        db.close()


def enqueue(request: Request) -> Enqueue:
    return queue(request).enqueue_plan
