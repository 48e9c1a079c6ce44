"""Who goes first on a shared worker (real Celery, real Redis): a high-priority job overtakes a
running one, and two jobs of the same priority take turns instead of queueing behind each other."""

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from benchmarks.services import wait_for_speeds
from tests.integration.conftest import WorkerProcess, make_client, queue_for
from tests.integration.helpers import job_body, wait_for
from worker.models import Batch


def start_big_job(client: TestClient, documents: int = 600) -> str:
    job_id: str = client.post("/v1/jobs", json=job_body(queries=1, documents=documents)).json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"/v1/jobs/{job_id}").json()["progress"]["done"] == 0:  # it holds the worker
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return job_id


def batch_values(db_url: str, job_id: str, column: Any) -> list[Any]:
    """`column` of each of the job's batches, in the batches' order."""
    engine = create_engine(db_url)
    with engine.connect() as db:
        values = db.scalars(select(column).where(Batch.job_id == job_id).order_by(Batch.number)).all()
    engine.dispose()
    return list(values)


def finish_times(db_url: str, job_id: str) -> list[datetime]:
    times = batch_values(db_url, job_id, Batch.finished_at)
    return sorted(t.replace(tzinfo=None) for t in times if t is not None)


def during(times: list[datetime], job: dict[str, Any]) -> int:
    start = datetime.fromisoformat(job["started_at"]).replace(tzinfo=None)
    end = datetime.fromisoformat(job["finished_at"]).replace(tzinfo=None)
    return sum(start <= t <= end for t in times)


def test_high_priority_overtakes_a_running_job(
    db_url: str, start_own_worker: Callable[..., WorkerProcess], tiny_model: Path
) -> None:
    """A worker holding one batch at a time, busy with a big job, runs a high-priority job's plan,
    batches and finalize before any more of the big job: not one big batch finishes meanwhile. (With
    two in hand, the other thread goes back to the big job whenever no high batch waits, during the
    plan, the last batch and the finalize: how many it finishes then is timing, not order. The model
    gate's order among batches in hand is tested in tests/unit/test_overlap.py.)"""
    worker = start_own_worker(db_url, f"{queue_for(db_url)}-one-batch", task_pairs="4", worker_batches="1")
    with make_client(db_url, worker.queue, str(tiny_model)) as client:
        big = start_big_job(client)
        high = {**job_body(queries=1, documents=20), "priority": "high"}
        done = wait_for(client, client.post("/v1/jobs", json=high).json()["id"])
        assert done["status"] == "completed" and done["priority"] == "high"
        assert client.get(f"/v1/jobs/{big}").json()["status"] == "running"  # it did not wait for the big one
        assert during(finish_times(db_url, big), done) == 0
        client.post(f"/v1/jobs/{big}/cancel")


def test_jobs_of_equal_priority_take_turns(client: TestClient, db_url: str) -> None:
    big = start_big_job(client)
    second = client.post("/v1/jobs", json=job_body(queries=1, documents=80)).json()
    done = wait_for(client, second["id"])
    assert done["status"] == "completed" and done["priority"] == "normal"
    assert client.get(f"/v1/jobs/{big}").json()["status"] == "running"  # the second did not queue behind it
    shared = during(finish_times(db_url, big), done)
    assert shared >= 10  # 20 batches of the second job interleaved with the big job's
    client.post(f"/v1/jobs/{big}/cancel")


def test_a_workers_speed_sizes_the_batches_of_later_jobs(
    db_url: str, start_own_worker: Callable[..., WorkerProcess], tiny_model: Path
) -> None:
    """RERANK_TASK_SECONDS: a worker times its forward passes and its heartbeat publishes the speed
    (GET /v1/workers); a job planned after that is cut to the characters 0.2 s takes at the slowest
    live speed, not into RERANK_TASK_PAIRS (2 here: 40 batches for this job)."""
    worker = start_own_worker(
        db_url, f"{queue_for(db_url)}-timed", task_pairs="2", task_seconds="0.2", heartbeat_seconds="0.2"
    )
    with make_client(db_url, worker.queue, str(tiny_model)) as client:
        first = client.post("/v1/jobs", json=job_body(queries=1, documents=40)).json()["id"]
        assert wait_for(client, first)["status"] == "completed"
        wait_for_speeds(client, worker.queue, timeout=30)
        listed = client.get("/v1/workers").json()["workers"]
        (me,) = [w for w in listed if w["queue"].startswith(f"{worker.queue}.")]
        assert me["characters_per_second"] > 0
        second = client.post("/v1/jobs", json=job_body(queries=2, documents=40)).json()["id"]
        assert wait_for(client, second)["status"] == "completed"
    sizes = batch_values(db_url, second, Batch.pairs)
    assert sum(sizes) == 80 and max(sizes) > 2 and len(sizes) < 40
