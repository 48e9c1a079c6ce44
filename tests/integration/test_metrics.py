"""GET /metrics on the API and a worker's --metrics-port, parsed with prometheus_client's
parser: the numbers move as jobs run."""

import time
from collections.abc import Callable

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from tests.integration.conftest import NOBODY_LISTENS, REDIS_URL, WorkerProcess, authed, make_app, queue_for
from tests.integration.helpers import free_port, job_body, limits, wait_for
from worker import pipeline
from worker.config import Settings
from worker.lifecycle import Priority
from worker.queue import JobQueue, model_queue, priority_lists


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a scrape (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def test_api_metrics_move_as_a_job_runs(db_url: str, worker: WorkerProcess) -> None:
    with authed(make_app(db_url, worker.queue, worker.model)) as client:
        before = client.get("/metrics").text
        job_id = client.post("/v1/jobs", json=job_body(queries=2, documents=5)).json()["id"]
        assert wait_for(client, job_id)["status"] == "completed"
        response = client.post("/v2/rerank", json={"query": "pandas", "documents": ["a", "b", "c"]})
        assert response.status_code == 200
        after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    moved = {
        name: sample(after.text, name) - sample(before, name)
        for name in ("rerankq_pairs_submitted_total", "rerankq_pairs_scored_total")
    }
    assert moved == {"rerankq_pairs_submitted_total": 13, "rerankq_pairs_scored_total": 13}
    assert (
        sample(after.text, "rerankq_jobs", status="completed")
        - sample(before, "rerankq_jobs", status="completed")
        == 2
    )
    assert sample(after.text, "rerankq_http_requests_total", method="POST", route="/v1/jobs", code="202") == 1
    polls = sample(
        after.text, "rerankq_http_requests_total", method="GET", route="/v1/jobs/{job_id}", code="200"
    )
    assert polls >= 1
    assert sample(after.text, "rerankq_sync_request_seconds_count", route="/v2/rerank") == 1
    assert sample(after.text, "rerankq_sync_request_seconds_sum", route="/v2/rerank") > 0
    assert sample(after.text, "rerankq_pairs_failed_total") >= 0


def test_queue_depth_per_queue_and_priority_and_the_oldest_batch_waiting(
    db_url: str, session: Session
) -> None:
    """Nothing reads these queues: the plan task waits on the base queue at its priority, and once
    planned (here, in the test) the job's batches wait on its model's queue, and age."""
    queue = f"{queue_for(db_url)}-unread"
    batches = model_queue(queue, "tiny")
    broker = redis.Redis.from_url(REDIS_URL)
    try:
        with authed(make_app(db_url, queue, "tiny")) as client:
            empty = client.get("/metrics").text
            assert sample(empty, "rerankq_queue_depth", queue=queue, model="", priority="low") == 0
            assert sample(empty, "rerankq_broker_up") == 1
            job_id = client.post("/v1/jobs", json={**job_body(1, 6), "priority": "low"}).json()["id"]
            waiting = client.get("/metrics").text
            assert sample(waiting, "rerankq_queue_depth", queue=queue, model="", priority="low") == 1
            assert sample(waiting, "rerankq_queue_depth", queue=queue, model="", priority="high") == 0
            assert sample(waiting, "rerankq_queue_depth", queue=batches, model="tiny", priority="low") == 0
            planned = pipeline.plan_job(session, job_id, limits(task_pairs=2, queued_batches=3))
            JobQueue(Settings(broker_url=REDIS_URL, queue=queue)).enqueue_batches(
                planned.batches, planned.model, Priority.low
            )
            time.sleep(0.2)
            scraped = client.get("/metrics").text
            assert sample(scraped, "rerankq_queue_depth", queue=batches, model="tiny", priority="low") == 3
            assert sample(scraped, "rerankq_queue_depth", queue=batches, model="tiny", priority="normal") == 0
            assert sample(scraped, "rerankq_oldest_queued_batch_age_seconds") >= 0.2
            assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    finally:
        broker.delete(*priority_lists(queue).values(), *priority_lists(batches).values())


def test_a_scrape_while_the_broker_is_down_answers_without_queue_depth(db_url: str) -> None:
    app = make_app(db_url, NOBODY_LISTENS, "tiny", broker_url=f"redis://127.0.0.1:{free_port()}/0")
    with authed(app) as client:  # an admin's key: /metrics is an admin's
        response = client.get("/metrics")
    assert response.status_code == 200
    assert sample(response.text, "rerankq_broker_up") == 0
    assert "rerankq_queue_depth{" not in response.text
    assert 'rerankq_jobs{status="completed"}' in response.text  # the database's numbers still come


def test_worker_metrics_port(
    db_url: str, start_own_worker: Callable[..., WorkerProcess], tiny_model: object
) -> None:
    port = free_port()
    metered = start_own_worker(db_url, f"{queue_for(db_url)}-metered", task_pairs="4", metrics_port=str(port))
    scrape = f"http://127.0.0.1:{port}/metrics"
    idle = httpx.get(scrape).text
    assert sample(idle, "rerankq_worker_pairs_total") == 0
    info = [
        s.labels
        for family in text_string_to_metric_families(idle)
        for s in family.samples
        if s.name == "rerankq_worker_model_info"
    ]
    assert info == [{"model": str(tiny_model), "device": "cpu", "dtype": "float32"}]
    with authed(make_app(db_url, metered.queue, metered.model)) as client:
        job_id = client.post("/v1/jobs", json=job_body(queries=2, documents=5)).json()["id"]
        assert wait_for(client, job_id)["status"] == "completed"
    busy = httpx.get(scrape).text
    assert sample(busy, "rerankq_worker_pairs_total") == 10
    assert sample(busy, "rerankq_worker_batch_pairs_count") == 3  # 10 pairs, 4 per batch
    assert sample(busy, "rerankq_worker_batch_pairs_sum") == 10
    assert sample(busy, "rerankq_worker_batch_seconds_count") == 3
    assert sample(busy, "rerankq_worker_tokens_total") > 0
    assert sample(busy, "rerankq_worker_pairs_per_second") > 0
    assert sample(busy, "rerankq_worker_tokens_per_second") > 0
    assert sample(busy, "rerankq_worker_oom_splits_total") == 0
    assert sample(busy, "rerankq_worker_gpu_memory_bytes") == 0  # a CPU worker has none
