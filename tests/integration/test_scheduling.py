"""Who goes first on a shared worker (real Celery, real Redis): a high-priority job overtakes a
running one, and two jobs of the same priority take turns instead of queueing behind each other."""

import time
from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from tests.integration.helpers import job_body, wait_for
from worker.models import Batch


def start_big_job(client: TestClient, documents: int = 600) -> str:
    job_id: str = client.post("/v1/jobs", json=job_body(queries=1, documents=documents)).json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"/v1/jobs/{job_id}").json()["progress"]["done"] == 0:  # it holds the worker
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return job_id


def finish_times(db_url: str, job_id: str) -> list[datetime]:
    engine = create_engine(db_url)
    with engine.connect() as db:
        times = db.scalars(select(Batch.finished_at).where(Batch.job_id == job_id)).all()
    engine.dispose()
    return sorted(t.replace(tzinfo=None) for t in times if t is not None)


def during(times: list[datetime], job: dict[str, Any]) -> int:
    start = datetime.fromisoformat(job["started_at"]).replace(tzinfo=None)
    end = datetime.fromisoformat(job["finished_at"]).replace(tzinfo=None)
    return sum(start <= t <= end for t in times)


def test_high_priority_overtakes_a_running_job(client: TestClient, db_url: str) -> None:
    big = start_big_job(client)
    small = client.post("/v1/jobs", json={**job_body(queries=1, documents=20), "priority": "high"}).json()
    done = wait_for(client, small["id"])
    assert done["status"] == "completed" and done["priority"] == "high"
    assert client.get(f"/v1/jobs/{big}").json()["status"] == "running"  # it did not wait for the big one
    # while its 5 batches ran, the big job got at most the batch already in the worker's hands
    assert during(finish_times(db_url, big), done) <= 2
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
