"""Synchronous reranking over the job machinery: a request becomes a small high-priority job on
the same queue and workers, the caller waits for it (a Redis notice when a job finishes, checked
against the database) and gets the documents ranked best first."""

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache

import redis
import redis.asyncio
from sqlalchemy.orm import Session

from worker import service
from worker.config import Settings
from worker.errors import InvalidInput, JobCancelled, JobFailed, Unavailable, WaitTimeout
from worker.lifecycle import FINISHED, JobStatus, Priority
from worker.spec import DocumentSpec, JobOptions, JobSpec, QuerySpec
from worker.tenancy import Caller
from worker.views import JobOut

log = logging.getLogger(__name__)

# Every finished job's id is published here (by the worker's finalize task and by a cancel).
FINISHED_CHANNEL = "rerankq:finished"
# A waiter looks at the database this often even without a notice (a notice lost to a Redis
# reconnect, a job failed by something that does not publish): the notice is only the fast path.
RECHECK_SECONDS = 0.5
QUERY_ID = "query"


@dataclass(frozen=True)
class SyncRequest:
    """One query against a list of document texts, as the rerank routes receive it."""

    query: str
    documents: list[str]
    top_n: int | None = None
    max_length: int | None = None  # tokens per (query, document) window; default RERANK_MAX_LENGTH
    chunking: bool = True  # False: truncate long documents instead of reading them in windows
    field: str = "documents"  # what the client's API calls the documents, for errors


@dataclass(frozen=True)
class Ranked:
    index: int  # position of the document in the request
    raw_score: float

    @property
    def score(self) -> float:
        """sigmoid(raw_score), the 0..1 relevance score."""
        return 1.0 / (1.0 + math.exp(-self.raw_score)) if self.raw_score > -700 else 0.0


@dataclass(frozen=True)
class Ranking:
    job_id: str
    results: list[Ranked]  # best first, cut to top_n


def check(request: SyncRequest, settings: Settings) -> None:
    """A request the synchronous routes take: at most RERANK_SYNC_MAX_DOCUMENTS documents, none
    over RERANK_MAX_DOCUMENT_CHARS; else InvalidInput naming the field."""
    count, limit = len(request.documents), settings.sync_max_documents
    if count > limit:
        raise InvalidInput(
            f"{request.field}: {count} documents; a synchronous request takes at most {limit}"
            " (RERANK_SYNC_MAX_DOCUMENTS): submit larger ones as a job to POST /v1/jobs",
            field=request.field,
        )
    for index, text in enumerate(request.documents):
        if len(text) > settings.max_document_chars:
            field = f"{request.field}.{index}"
            raise InvalidInput(
                f"{field}: document has {len(text)} characters; the limit is"
                f" {settings.max_document_chars} (RERANK_MAX_DOCUMENT_CHARS)",
                field=field,
            )


def submit(
    session: Session, request: SyncRequest, settings: Settings, enqueue: service.Enqueue, caller: Caller
) -> str:
    """Store the request as a high-priority synchronous job of `caller`'s tenant and put it on the
    queue; its id."""
    check(request, settings)
    window = {} if request.max_length is None else {"max_length": request.max_length}
    options = JobOptions.model_validate({"chunking": {"enabled": request.chunking}, **window})
    documents = [DocumentSpec(id=str(i), text=text) for i, text in enumerate(request.documents)]
    spec = JobSpec(
        queries=[QuerySpec(id=QUERY_ID, text=request.query, documents=documents)],
        options=options,
        priority=Priority.high,
    )
    return service.submit_job(session, spec, settings, enqueue, synchronous=True, caller=caller).id


def is_finished(session: Session, job_id: str) -> bool:
    session.expire_all()  # read the row anew, not the session's copy
    return service.job_status(session, job_id).status in FINISHED


def ranking(session: Session, job_id: str, top_n: int | None) -> Ranking:
    """The finished job's documents ranked best first; a job that did not score every document
    is an error naming it (a partial ranking would silently drop documents)."""
    job = service.job_status(session, job_id)
    progress = job.progress
    if job.status == JobStatus.cancelled:
        raise JobCancelled(
            f"job {job_id} was cancelled before every document was scored; nothing to rank "
            f"(what was scored: GET /v1/jobs/{job_id}/results)",
            job_id,
            field="job",
        )
    if job.status != JobStatus.completed or progress.failed:
        reason = job.error or f"{progress.failed} of {progress.total} documents failed"
        raise JobFailed(f"job {job_id} is {job.status}: {reason}", job_id, field="job")
    page = service.results_page(session, job_id, QUERY_ID, limit=top_n or progress.total)
    return Ranking(job_id, [Ranked(int(row.document_id), row.raw_score) for row in page.results])


@dataclass
class FinishedWatch:
    """A subscription to finished-job notices, opened before the job is submitted so that no
    notice can be missed."""

    pubsub: redis.asyncio.client.PubSub

    async def wait(self, job_id: str, timeout: float, finished: Callable[[], Awaitable[bool]]) -> bool:
        """Wait until `finished()` says so, checking on every notice for `job_id` and every
        RECHECK_SECONDS; False after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            await self._notice(job_id, min(left, RECHECK_SECONDS))
            if await finished():
                return True
            if loop.time() >= deadline:
                return False

    async def _notice(self, job_id: str, seconds: float) -> None:
        """Until a notice for `job_id` or `seconds` have passed; with the broker gone (a Redis
        restart while the request waits), just the seconds: the database is still checked."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while (left := until - loop.time()) > 0:
            try:
                message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            except redis.RedisError:
                await asyncio.sleep(max(0.0, until - loop.time()))
                return
            if message is not None and message["data"] == job_id.encode():
                return


@asynccontextmanager
async def watch_finished(broker_url: str) -> AsyncIterator[FinishedWatch]:
    """A subscription to finished-job notices; an unreachable broker is a 503 before anything
    is stored."""
    client = redis.asyncio.Redis.from_url(broker_url)
    pubsub = client.pubsub()
    try:
        try:
            await pubsub.subscribe(FINISHED_CHANNEL)
        except redis.RedisError as error:
            raise Unavailable(f"the broker is unreachable ({error}); nothing was submitted") from error
        yield FinishedWatch(pubsub)
    finally:
        with contextlib.suppress(redis.RedisError):  # closing a connection Redis already dropped
            await pubsub.aclose()
        await client.aclose()


async def held_until_finished(
    job_id: str, read: Callable[[], JobOut], broker_url: str, seconds: float
) -> JobOut:
    """A long poll: the job as `read` gives it once it has finished, or after `seconds` as it is
    then. One request in place of a client's polls, each of which costs the API and the database
    CPU that a worker on the same machine would have used. With the broker unreachable, the job
    as it is now: the client asks again."""
    view = await asyncio.to_thread(read)
    if seconds <= 0 or view.status in FINISHED:
        return view

    async def finished() -> bool:
        nonlocal view
        view = await asyncio.to_thread(read)
        return view.status in FINISHED

    with contextlib.suppress(Unavailable):
        async with watch_finished(broker_url) as watch:
            if not await finished():  # read again once subscribed: a notice sent before is not lost
                await watch.wait(job_id, seconds, finished)
    return view


async def rerank(
    session: Session, request: SyncRequest, settings: Settings, enqueue: service.Enqueue, caller: Caller
) -> Ranking:
    """Submit the request as a job, wait for it, and rank; WaitTimeout names the job when it is
    not done within RERANK_SYNC_TIMEOUT (it goes on, and its results can be fetched later)."""
    timeout = settings.sync_timeout
    async with watch_finished(settings.broker_url) as watch:
        job_id = await asyncio.to_thread(submit, session, request, settings, enqueue, caller)
        done = await watch.wait(job_id, timeout, lambda: asyncio.to_thread(is_finished, session, job_id))
    if not done:
        raise WaitTimeout(
            f"job {job_id} did not finish within {timeout:g} s (RERANK_SYNC_TIMEOUT); it goes on: "
            f"GET /v1/jobs/{job_id}, then /v1/jobs/{job_id}/results",
            job_id,
        )
    return await asyncio.to_thread(ranking, session, job_id, request.top_n)


@lru_cache
def _publisher(broker_url: str) -> redis.Redis:
    return redis.Redis.from_url(broker_url)


def announce_finished(broker_url: str, job_id: str) -> None:
    """Tell waiting clients a job finished. Best effort: a waiter also checks the database."""
    try:
        _publisher(broker_url).publish(FINISHED_CHANNEL, job_id)
    except redis.RedisError as error:
        log.warning("could not announce that job %s finished: %s", job_id, error)
