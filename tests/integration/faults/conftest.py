"""Fault tests' world: a redis-server and a PostgreSQL cluster they may kill (benchmarks.killable),
each stopped and removed at the end, and workers and reconcilers on them. Settings are short
(leases, heartbeats, reconcile passes) so recovery takes seconds."""

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from benchmarks.killable import PostgresServer, RedisServer
from tests.integration.conftest import WorkerProcess, bearer, make_app, new_key
from tests.integration.helpers import job_spec
from worker import service
from worker.config import Settings
from worker.db import session_factory
from worker.errors import is_connection_error
from worker.lifecycle import BatchStatus
from worker.models import Batch, Job, Result
from worker.queue import JobQueue

# What every process of a fault test runs with: recovery in seconds rather than minutes.
FAST = {
    "lease_seconds": "2",
    "heartbeat_seconds": "0.5",
    "worker_timeout": "3",
    "reconcile_seconds": "0.5",
    "database_retry_seconds": "300",
}


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    yield server
    server.remove()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.kill()


class Process:
    """A `rerankq` subprocess (a reconcile loop), its output kept in a log."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", *args],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass
class Stack:
    """One fault test's world: its own Redis, a fresh database on the killable PostgreSQL, a queue,
    and the means to start workers and reconcilers on them and to submit jobs."""

    redis: RedisServer
    postgres: PostgresServer
    db_url: str
    queue: str
    model: str
    logs: Path
    start_worker: Callable[..., WorkerProcess]
    started: list[Process]
    workers: list[WorkerProcess]
    key: str  # an admin API key

    def env(self, **settings: str) -> dict[str, str]:
        values = {"database_url": self.db_url, "broker_url": self.redis.url, "queue": self.queue}
        values |= {"model": self.model, **FAST, **settings}
        return {**os.environ, **{f"RERANK_{key.upper()}": value for key, value in values.items()}}

    def worker(self, **settings: str) -> WorkerProcess:
        own = {"broker_url": self.redis.url, **FAST, **settings}
        worker = self.start_worker(self.db_url, self.queue, **own)
        self.workers.append(worker)
        return worker

    def reconciler(self, **settings: str) -> Process:
        log = self.logs / f"reconcile-{len(self.started)}.log"
        process = Process(["reconcile"], self.env(**settings), log)
        self.started.append(process)
        return process

    def client(self, **settings: str) -> TestClient:
        """The HTTP API over this stack (`settings` override more), with the stack's admin key
        (made when the stack started: the database may be down by now)."""
        app = make_app(self.db_url, self.queue, self.model, broker_url=self.redis.url, **settings)
        return TestClient(app, headers=bearer(self.key))

    def session(self) -> Session:
        return session_factory(self.db_url)()

    def submit(self, queries: int, documents: int, repeat: int = 1, model: str | None = None) -> str:
        """A job of queries x documents pairs (each text `repeat` times longer), put on the queue."""
        spec = job_spec(queries, documents, chunking={"enabled": False})
        for query in spec.queries:
            for document in query.documents:
                document.text *= repeat
        settings = Settings(broker_url=self.redis.url, queue=self.queue, model=model or self.model)
        with self.session() as session:
            return service.submit_job(session, spec, settings, JobQueue(settings).enqueue_plan).id


_numbers = itertools.count()


@pytest.fixture
def stack(
    redis_server: RedisServer,
    postgres_server: PostgresServer,
    tiny_model: Path,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Stack]:
    from worker.migrate import upgrade

    name = f"fault_{os.getpid()}_{next(_numbers)}"
    db_url = postgres_server.fresh_database(name)
    upgrade(db_url)
    queue = f"{name}-{request.node.name[:40]}"
    world = Stack(
        redis_server,
        postgres_server,
        db_url,
        queue,
        str(tiny_model),
        tmp_path,
        start_worker,
        [],
        [],
        new_key(db_url),
    )
    yield world
    for process in world.started:
        process.stop()
    for worker in world.workers:  # nothing of this test may live on into the next
        if worker.process.poll() is None:
            worker.kill()


def current(stack: Stack, statement: Any) -> Any:
    """A value read in a fresh session (what the workers committed so far); None while the
    database is unreachable."""
    try:
        with stack.session() as session:
            return session.scalar(statement)
    except Exception as error:
        if not is_connection_error(error):
            raise
        return None


def wait_until(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.05)
    return value


def wait_for_job(stack: Stack, job_id: str, timeout: float) -> float:
    """Seconds until the job has finished."""
    started = time.monotonic()
    wait_until(
        f"job {job_id} finished",
        lambda: current(stack, select(Job.finished_at).where(Job.id == job_id)),
        timeout,
    )
    return time.monotonic() - started


def assert_exactly_once(stack: Stack, job_id: str, pairs: int) -> list[Batch]:
    """The job completed, every pair has exactly one ranked result, the counters agree, and no
    batch failed; its batches, for further checks."""
    with stack.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.status, job.total_pairs, job.done_pairs, job.failed_pairs) == (
            "completed",
            pairs,
            pairs,
            0,
        )
        results = session.execute(
            select(
                func.count(), func.count(func.distinct(Result.document_id)), func.count(Result.rank)
            ).where(Result.job_id == job_id)
        ).one()
        assert tuple(results) == (pairs, pairs, pairs)
        batches = list(session.scalars(select(Batch).where(Batch.job_id == job_id)))
        assert {b.status for b in batches} == {BatchStatus.done}, [(b.id, b.status, b.error) for b in batches]
        assert sum(b.pairs for b in batches) == pairs
        return batches
