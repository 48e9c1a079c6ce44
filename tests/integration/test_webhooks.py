"""Webhooks through a real worker to a local receiver: signed, retried with backoff until the
receiver accepts, one logical delivery per finished job, attempts visible on the job."""

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from api import deps
from tests.integration.conftest import NOBODY_LISTENS, REDIS_URL, WorkerProcess, authed, make_app, queue_for
from tests.integration.helpers import free_port, job_body, limits, run_all, submit, wait_for
from worker import pipeline, service
from worker.config import Settings
from worker.engine import Reranker
from worker.models import Job, utcnow
from worker.queue import JobQueue
from worker.reconcile import WEBHOOK_GRACE, reconcile
from worker.webhooks import WebhookPolicy, deliver

SECRET = "webhook-test-secret"


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A tiny HTTP server that answers each POST with the next status of `statuses` (the last
    one from then on) and keeps what it received."""

    statuses: list[int]
    url: str = ""
    received: list[Delivery] = field(default_factory=list)

    def accepted(self) -> list[Delivery]:
        answers = self.statuses + [self.statuses[-1]] * len(self.received)
        return [d for d, status in zip(self.received, answers, strict=False) if status < 300]


@pytest.fixture
def receiver() -> Iterator[Callable[[list[int]], Receiver]]:
    servers: list[ThreadingHTTPServer] = []

    def start(statuses: list[int]) -> Receiver:
        state = Receiver(statuses)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                state.received.append(Delivery(dict(self.headers), body))
                status = state.statuses[min(len(state.received), len(state.statuses)) - 1]
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        state.url = f"http://127.0.0.1:{server.server_port}/hooks/rerankq"
        return state

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture(scope="module")
def hook_worker(db_url: str, start_worker: Callable[..., WorkerProcess]) -> Iterator[WorkerProcess]:
    """A worker that signs webhooks, retries them quickly and gives up after 4 attempts; stopped
    with this module."""
    worker = start_worker(
        db_url,
        f"{queue_for(db_url)}-webhooks",
        task_pairs="4",
        webhook_secret=SECRET,
        webhook_backoff="0.2",
        webhook_max_attempts="4",
    )
    yield worker
    worker.stop()


@pytest.fixture
def hook_client(db_url: str, hook_worker: WorkerProcess) -> Iterator[TestClient]:
    with authed(make_app(db_url, hook_worker.queue, hook_worker.model)) as client:
        yield client


def wait_delivery(client: TestClient, job_id: str, attempts: int, timeout: float = 60) -> dict[str, Any]:
    """The job once its webhook was delivered or tried `attempts` times."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        webhook = job["webhook"]
        if webhook["delivered_at"] is not None or webhook["attempts"] >= attempts:
            return job
        time.sleep(0.1)
    raise TimeoutError(f"webhook of job {job_id}: {job['webhook']}")


def test_a_receiver_failing_twice_gets_one_logical_delivery_signed(
    hook_client: TestClient, receiver: Callable[[list[int]], Receiver]
) -> None:
    target = receiver([500, 503, 200])
    body = job_body(queries=1, documents=6, callback_url=target.url)
    job_id = hook_client.post("/v1/jobs", json=body).json()["id"]
    assert wait_for(hook_client, job_id)["status"] == "completed"
    job = wait_delivery(hook_client, job_id, attempts=3)
    time.sleep(1.0)  # a stray retry would arrive within this (backoff 0.2 s, 0.4 s, ...)
    assert len(target.received) == 3
    assert job["webhook"]["attempts"] == 3 and job["webhook"]["last_error"] is None
    ids = {d.headers["X-Rerankq-Delivery"] for d in target.received}
    assert len(ids) == 1  # every retry is the same logical delivery
    for delivery in target.received:
        expected = "sha256=" + hmac.new(SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(delivery.headers["X-Rerankq-Signature"], expected)
    accepted = target.accepted()
    assert len(accepted) == 1
    view = json.loads(accepted[0].body)
    assert view["id"] == job_id and view["status"] == "completed" and view["progress"]["done"] == 6
    assert view["webhook"]["attempts"] == 2 and "HTTP 503" in view["webhook"]["last_error"]
    # the body is the job as GET /v1/jobs/{id} showed it at the time of sending
    assert view.keys() == hook_client.get(f"/v1/jobs/{job_id}").json().keys()


def test_an_unreachable_receiver_is_given_up_with_the_error_on_the_job(hook_client: TestClient) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/hook"
    job_id = hook_client.post("/v1/jobs", json=job_body(1, 2, callback_url=nowhere)).json()["id"]
    job = wait_delivery(hook_client, job_id, attempts=4)
    assert job["status"] == "completed"
    assert job["webhook"]["delivered_at"] is None
    assert "ConnectError" in job["webhook"]["last_error"]
    time.sleep(1.0)
    assert hook_client.get(f"/v1/jobs/{job_id}").json()["webhook"]["attempts"] == 4


def test_a_cancelled_job_is_delivered_too(
    db_url: str, hook_worker: WorkerProcess, receiver: Callable[[list[int]], Receiver]
) -> None:
    """The job waits on a queue nobody reads; the cancel hands its webhook to the worker."""
    target = receiver([200])
    app = make_app(db_url, NOBODY_LISTENS, "tiny")
    hook_queue = JobQueue(Settings(database_url=db_url, broker_url=REDIS_URL, queue=hook_worker.queue))
    app.dependency_overrides[deps.on_finished] = lambda: hook_queue.job_finished
    with authed(app) as client:
        job_id = client.post("/v1/jobs", json=job_body(1, 2, callback_url=target.url)).json()["id"]
        assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
        job = wait_delivery(client, job_id, attempts=1)
    assert job["webhook"]["delivered_at"] is not None
    assert [json.loads(d.body)["status"] for d in target.received] == ["cancelled"]


def _scored_unfinalized(session: Session, job_id: str, reranker: Reranker) -> None:
    """Every batch of the job scored here; its finalize message lost (never sent)."""
    steps = limits(2, queued_batches=8)
    for batch in pipeline.plan_job(session, job_id, steps).batches:
        assert pipeline.score_batch(session, batch, reranker, steps).batches == []
        session.commit()


def test_a_job_the_reconciler_closes_is_delivered_once(
    db_url: str,
    session: Session,
    reranker: Reranker,
    hook_worker: WorkerProcess,
    receiver: Callable[[list[int]], Receiver],
) -> None:
    """The reconciler closes the job and runs the same finish hook as the finalize task would;
    later passes (and a finalize delivered again) close nothing and send nothing."""
    target = receiver([200])
    job_id = submit(session, queries=1, documents=4, callback_url=target.url)
    _scored_unfinalized(session, job_id, reranker)
    doorbell = JobQueue(Settings(database_url=db_url, broker_url=REDIS_URL, queue=hook_worker.queue))
    assert job_id in reconcile(session, limits(2), doorbell).finalized
    assert pipeline.finalize_job(session, job_id) is False  # closed once: a late finalize runs no hook
    with authed(make_app(db_url, hook_worker.queue, hook_worker.model)) as client:
        job = wait_delivery(client, job_id, attempts=1)
        again = reconcile(session, limits(2), doorbell)
        time.sleep(1.0)  # a second delivery would arrive within this
    assert job_id not in again.finalized and job_id not in again.webhooks
    assert job["status"] == "completed" and job["webhook"]["delivered_at"] is not None
    assert len(target.received) == 1 and json.loads(target.received[0].body)["id"] == job_id


def test_a_lost_finish_hook_is_made_up_by_the_reconciler_once(
    db_url: str,
    session: Session,
    reranker: Reranker,
    hook_worker: WorkerProcess,
    receiver: Callable[[list[int]], Receiver],
) -> None:
    """The job was closed, but whatever closed it died (or lost the broker) before queuing its
    webhook: a minute on, the reconciler queues it, once."""
    target = receiver([200])
    job_id = submit(session, queries=1, documents=4, callback_url=target.url)
    run_all(session, job_id, reranker)  # closed here: nobody runs its finish hook
    minutes_ago = utcnow() - 2 * WEBHOOK_GRACE
    session.execute(update(Job).where(Job.id == job_id).values(finished_at=minutes_ago))
    session.commit()
    doorbell = JobQueue(Settings(database_url=db_url, broker_url=REDIS_URL, queue=hook_worker.queue))
    assert job_id in reconcile(session, limits(2), doorbell).webhooks
    with authed(make_app(db_url, hook_worker.queue, hook_worker.model)) as client:
        job = wait_delivery(client, job_id, attempts=1)
        again = reconcile(session, limits(2), doorbell)
        time.sleep(1.0)
    assert job_id not in again.webhooks
    assert job["webhook"]["delivered_at"] is not None and len(target.received) == 1


def test_a_job_without_callback_url_has_no_webhook(hook_client: TestClient) -> None:
    job_id = hook_client.post("/v1/jobs", json=job_body(1, 2)).json()["id"]
    assert wait_for(hook_client, job_id)["webhook"] is None


def test_callback_url_must_be_http(hook_client: TestClient) -> None:
    response = hook_client.post("/v1/jobs", json=job_body(1, 2, callback_url="file:///etc/passwd"))
    assert response.status_code == 422
    assert response.json()["field"] == "options.callback_url"


def test_retries_back_off_doubling_until_given_up(session: Session, reranker: Reranker) -> None:
    """The policy alone, over the database: each failure doubles the wait; the last try gives up."""
    job_id = submit(session, queries=1, documents=2, callback_url="http://127.0.0.1:9/hook")
    run_all(session, job_id, reranker)
    sent: list[dict[str, str]] = []

    def failing(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        sent.append(headers)
        return 502

    policy = WebhookPolicy(secret="k", max_attempts=4, backoff=0.5, timeout=1.0)
    waits = [deliver(session, job_id, policy, post=failing) for _ in range(5)]
    assert waits == [0.5, 1.0, 2.0, None, None]
    assert len(sent) == 4 and len({h["X-Rerankq-Delivery"] for h in sent}) == 1
    webhook = service.job_status(session, job_id).webhook
    assert webhook is not None
    assert webhook.attempts == 4 and webhook.last_error == "the receiver answered HTTP 502"
