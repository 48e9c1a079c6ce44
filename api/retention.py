"""The periodic purge of finished jobs older than RERANK_RETENTION_DAYS and of Idempotency-Keys
older than RERANK_IDEMPOTENCY_HOURS, run by the API process (an hour apart; several API processes
purging at once delete nothing twice)."""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from worker import service
from worker.config import Settings
from worker.db import session_scope

log = logging.getLogger(__name__)
PURGE_EVERY_SECONDS = 3600.0


def purge(settings: Settings) -> None:
    try:
        with session_scope(settings.database_url) as session:
            if count := service.purge_expired(session, settings.retention_days):
                log.info("deleted %d job(s) finished over %g days ago", count, settings.retention_days)
            service.purge_idempotency_keys(session, settings.idempotency_hours)
    except Exception as error:  # a database that is down or not migrated yet: try again next time
        log.warning("purging expired jobs and keys failed: %s: %s", type(error).__name__, error)


async def _purge_forever(settings: Settings) -> None:
    while True:
        await run_in_threadpool(purge, settings)
        await asyncio.sleep(PURGE_EVERY_SECONDS)


def retention(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: purge at start and then hourly."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_purge_forever(settings))
        yield
        task.cancel()

    return lifespan
