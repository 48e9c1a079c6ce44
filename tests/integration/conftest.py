"""The integration tier's fixtures: real Redis and PostgreSQL (checked once; one clear line if they
are absent), freshly migrated databases, real Celery workers, the HTTP API over them."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

# The password is the one docker-compose.yml sets; a server with trust authentication ignores it.
POSTGRES_URL = os.environ.get(
    "RERANK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres:rerankq@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("RERANK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
QUEUE = f"rerank-test-{os.getpid()}"
NOBODY_LISTENS = f"{QUEUE}-nobody-listens"  # no worker: jobs sent there stay queued
# Before any worker module reads its Settings: the test broker and a queue of this run alone.
os.environ["RERANK_BROKER_URL"] = REDIS_URL
os.environ["RERANK_QUEUE"] = QUEUE
# Batches of the RERANK_TASK_PAIRS each test sets: a worker's measured speed would otherwise resize
# the batches of its later jobs (the tests of the cut by time set RERANK_TASK_SECONDS themselves).
os.environ["RERANK_TASK_SECONDS"] = "0"


def _unreachable(url: str) -> str | None:
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=3).close()
        return None
    except OSError as error:
        return f"{parsed.hostname}:{parsed.port} ({error.strerror or error})"


@pytest.fixture(scope="session", autouse=True)
def services_up() -> Iterator[None]:
    """Stop the run with one clear line when a server is absent (integration tests only). When the
    run ends, its queues and their bindings (every key naming QUEUE) are deleted by key: the shared
    Redis is left as found, other runs' keys untouched."""
    down = [
        f"{name} at {where}"
        for name, url in (("Redis", REDIS_URL), ("PostgreSQL", POSTGRES_URL))
        if (where := _unreachable(url))
    ]
    if down:
        pytest.exit(
            f"unreachable: {', '.join(down)}; start them with `docker compose up -d redis postgres`", 3
        )
    yield
    from benchmarks.services import delete_queue_keys

    delete_queue_keys(REDIS_URL, QUEUE)


def _fresh_postgres() -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(POSTGRES_URL)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return POSTGRES_URL


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database of each kind rerankq supports."""
    from worker.migrate import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'rerankq.db'}"
    else:
        url = _fresh_postgres()
    upgrade(url)
    return url


@pytest.fixture
def session(db_url: str) -> Iterator:  # type: ignore[type-arg]
    from worker.db import session_factory

    db = session_factory(db_url)()
    yield db
    db.rollback()
    db.close()


class WorkerProcess:
    """A real `rerankq worker` process on its own queue, with its log kept for assertions."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.queue = env["RERANK_QUEUE"]
        self.model = env["RERANK_MODEL"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "worker", "--device", "cpu", "--loglevel", "info"],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log.read_text()}")
            if " ready." in self.log.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL, as the kernel's OOM killer would: no chance to acknowledge anything."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def start_worker(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers for a database; all are stopped at the end of the session, if not before
    (start_own_worker, or a module's fixture, stops one no later test uses)."""
    started: list[WorkerProcess] = []

    def start(db_url: str, queue: str, **settings: str) -> WorkerProcess:
        env = {
            **os.environ,
            "RERANK_DATABASE_URL": db_url,
            "RERANK_MODEL": str(tiny_model),
            "RERANK_QUEUE": queue,
            **{f"RERANK_{key.upper()}": value for key, value in settings.items()},
        }
        log = tmp_path_factory.mktemp("worker") / "worker.log"
        worker = WorkerProcess(env, log)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def start_own_worker(start_worker: Callable[..., WorkerProcess]) -> Iterator[Callable[..., WorkerProcess]]:
    """start_worker for a worker of settings no later test shares: stopped when its test ends (a
    worker holds its model, about 450 MB, and suites run side by side)."""
    started: list[WorkerProcess] = []

    def start(db_url: str, queue: str, **settings: str) -> WorkerProcess:
        started.append(start_worker(db_url, queue, **settings))
        return started[-1]

    yield start
    for worker in started:
        worker.stop()


def queue_for(db_url: str) -> str:
    """One queue per database, so a worker never takes a job stored in another database."""
    return f"{QUEUE}-{urlparse(db_url).scheme.split('+')[0]}"


@pytest.fixture(scope="session")
def worker(db_url: str, start_worker: Callable[..., WorkerProcess]) -> WorkerProcess:
    """One long-lived worker per database, with small batches so jobs span several tasks."""
    return start_worker(db_url, queue_for(db_url), task_pairs="4")


def make_app(db_url: str, queue: str, model: str, **settings: Any) -> FastAPI:
    """The HTTP API on `db_url`, handing work to the workers of `queue` that serve `model` (jobs
    record it and travel on its queue): an app of its own Settings (`settings` override more)."""
    from api.app import create_app
    from worker.config import Settings

    given = {"database_url": db_url, "broker_url": REDIS_URL, "queue": queue, "model": model, **settings}
    return create_app(Settings(**given))


def new_key(db_url: str, tenant: str = "tests", admin: bool = True) -> str:
    """A fresh API key of `tenant` in the database at `db_url` (an admin's by default: the tests'
    clients see every job, as the service's own sessions do)."""
    from worker import keys
    from worker.db import session_scope

    with session_scope(db_url) as session:
        return keys.create_key(session, tenant, admin)[1]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def authed(app: FastAPI, tenant: str = "tests", admin: bool = True) -> TestClient:
    """A client of `app` that sends a new key of `tenant` with every request."""
    return TestClient(app, headers=bearer(new_key(app.state.settings.database_url, tenant, admin)))


def make_client(db_url: str, queue: str, model: str, **settings: Any) -> TestClient:
    return authed(make_app(db_url, queue, model, **settings))


@pytest.fixture
def client(db_url: str, worker: WorkerProcess, tiny_model: Path) -> Iterator[TestClient]:
    with make_client(db_url, worker.queue, str(tiny_model)) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def api_server(
    db_url: str, worker: WorkerProcess, tiny_model: Path, tmp_path: Path
) -> Iterator[tuple[str, dict[str, str]]]:
    """`rerankq api` in its own process, on the test database and the worker's queue and model."""
    port = free_port()
    env = {
        **os.environ,
        "RERANK_DATABASE_URL": db_url,
        "RERANK_QUEUE": worker.queue,
        "RERANK_MODEL": str(tiny_model),
        "RERANK_API_KEY": new_key(db_url),  # what the `rerankq` client commands send
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "api", "--port", str(port)],
        env=env,
        stdout=(tmp_path / "api.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:  # open: no key needed
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, (tmp_path / "api.log").read_text()
        time.sleep(0.2)
    yield url, {**env, "RERANK_API_URL": url}
    server.terminate()
    server.wait(20)
