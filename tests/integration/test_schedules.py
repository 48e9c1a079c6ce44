"""Reruns and schedules on real Redis, Celery workers, SQLite and PostgreSQL: a rerun copies a job
(documents, collection references, options, judgements), a schedule's due time makes one run however
many ticks see it, a failed run leaves the next one alone, and a real `rerankq beat` drives it."""

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from tests.integration.conftest import REDIS_URL, WorkerProcess, free_port
from tests.integration.helpers import job_body, wait_for
from worker import schedules
from worker.config import Settings
from worker.db import session_factory
from worker.lifecycle import Priority
from worker.models import Schedule, utcnow
from worker.queue import JobQueue

NDJSON = {"content-type": "application/x-ndjson"}


def finished_job(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"])
    assert job["status"] == "completed", job
    return job


def scores(client: TestClient, job_id: str) -> dict[tuple[str, str], float]:
    rows = client.get(f"/v1/jobs/{job_id}/results", params={"limit": 1000}).json()["results"]
    return {(row["query_id"], row["document_id"]): row["raw_score"] for row in rows}


def test_rerun_copies_documents_options_and_judgements(client: TestClient) -> None:
    body = job_body(queries=2, documents=4, top_k=3, threshold=0.3)
    body["qrels"] = [{"query_id": "q0", "document_id": "d1", "relevance": 2}]
    source = finished_job(client, body)

    response = client.post(f"/v1/jobs/{source['id']}/rerun")
    assert response.status_code == 202, response.text
    again = wait_for(client, response.json()["id"])

    assert again["id"] != source["id"] and again["rerun_of"] == source["id"]
    assert again["status"] == "completed" and again["progress"]["total"] == 8
    assert again["options"] == source["options"] and again["model"] == source["model"]
    assert scores(client, again["id"]) == pytest.approx(scores(client, source["id"]))
    evaluation = client.get(f"/v1/jobs/{again['id']}/evaluation").json()
    assert [q["query_id"] for q in evaluation["queries"]] == ["q0"]


def test_rerun_of_a_collection_job_reads_the_collection_as_it_is_now(client: TestClient) -> None:
    lines = [f'{{"id": "kb-{i}", "text": "article {i} on missing values"}}' for i in range(5)]
    collection = client.post("/v1/collections", content="\n".join(lines), headers=NDJSON).json()
    body = {
        "collection": collection["id"],
        "queries": [
            {"id": "all", "text": "missing values"},
            {"id": "two", "text": "articles", "document_ids": ["kb-1", "kb-3"]},
        ],
    }
    source = finished_job(client, body)
    again = wait_for(client, client.post(f"/v1/jobs/{source['id']}/rerun").json()["id"])

    assert again["status"] == "completed" and again["collection"] == collection["id"]
    assert again["progress"]["total"] == source["progress"]["total"] == 7
    assert set(scores(client, again["id"])) == set(scores(client, source["id"]))


def test_rerun_of_an_unknown_job_is_404(client: TestClient) -> None:
    response = client.post("/v1/jobs/nope/rerun")
    assert response.status_code == 404 and response.json()["field"] == "id"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cron": "0 2 * *"}, "cron"),
        ({"cron": "61 2 * * *"}, "cron"),
        ({"cron": "0 2 * * * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"name": "x" * 300}, "name"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_field(
    client: TestClient, change: dict[str, str], field: str
) -> None:
    job = finished_job(client, job_body(queries=1, documents=2))
    before = client.get("/v1/schedules").json()["schedules"]
    response = client.post("/v1/schedules", json={"job_id": job["id"], "cron": "0 2 * * *", **change})
    assert response.status_code == 422 and response.json()["field"] == field, response.text
    assert client.get("/v1/schedules").json()["schedules"] == before


def test_schedule_lifecycle_and_its_template_is_kept(client: TestClient) -> None:
    job = finished_job(client, job_body(queries=1, documents=2))
    assert client.post("/v1/schedules", json={"job_id": "nope", "cron": "0 2 * * *"}).status_code == 404
    body = {"job_id": job["id"], "cron": "30 2 * * 1-5", "timezone": "Europe/Paris", "name": "nightly"}
    created = client.post("/v1/schedules", json=body)
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["runs"] == [] and schedule["cron"] == "30 2 * * 1-5"
    due = schedule["next_due_at"]
    assert due.endswith(("01:30:00Z", "00:30:00Z")) and due > utcnow().isoformat()[:19]  # 02:30 in Paris
    assert schedule["id"] in [s["id"] for s in client.get("/v1/schedules").json()["schedules"]]

    refused = client.delete(f"/v1/jobs/{job['id']}")
    assert refused.status_code == 409 and schedule["id"] in refused.json()["error"]
    assert client.post(f"/v1/schedules/{schedule['id']}/pause").json()["paused"] is True
    assert client.post(f"/v1/schedules/{schedule['id']}/resume").json()["paused"] is False

    assert client.delete(f"/v1/schedules/{schedule['id']}").status_code == 204
    assert client.get(f"/v1/schedules/{schedule['id']}").status_code == 404
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204


@pytest.fixture
def schedule_of(client: TestClient) -> Iterator[Callable[..., dict[str, Any]]]:
    """Make schedules that are deleted after the test: ticks see every schedule of the database."""
    made: list[str] = []

    def make(job_id: str, cron: str = "*/5 * * * *") -> dict[str, Any]:
        response = client.post("/v1/schedules", json={"job_id": job_id, "cron": cron})
        assert response.status_code == 201, response.text
        made.append(response.json()["id"])
        schedule: dict[str, Any] = response.json()
        return schedule

    yield make
    for schedule_id in made:
        client.delete(f"/v1/schedules/{schedule_id}")


def tick_settings(db_url: str, worker: WorkerProcess, **given: Any) -> Settings:
    return Settings(**{"database_url": db_url, "broker_url": REDIS_URL, "queue": worker.queue, **given})


def test_a_due_time_makes_one_run_however_many_ticks_see_it(
    client: TestClient, db_url: str, worker: WorkerProcess, schedule_of: Callable[..., dict[str, Any]]
) -> None:
    template = finished_job(client, job_body(queries=1, documents=3))
    schedule = schedule_of(template["id"])
    settings = tick_settings(db_url, worker)
    enqueue = JobQueue(settings).enqueue_plan
    due = client.get(f"/v1/schedules/{schedule['id']}").json()["next_due_at"]
    now = datetime.fromisoformat(due) + timedelta(seconds=30)

    def tick() -> list[str]:
        with session_factory(db_url)() as session:
            return schedules.tick(session, settings, enqueue, now)

    # two beats' ticks at once (threads, sessions of their own), then a late re-delivered one
    submitted: list[list[str]] = []
    threads = [threading.Thread(target=lambda: submitted.append(tick())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    submitted.append(tick())
    assert sorted(len(jobs) for jobs in submitted) == [0, 0, 1], submitted

    found = client.get(f"/v1/schedules/{schedule['id']}").json()
    assert len(found["runs"]) == 1 and found["runs"][0]["due_at"] == due.replace("+00:00", "Z")
    run = wait_for(client, found["runs"][0]["job_id"])
    assert run["status"] == "completed" and run["rerun_of"] == template["id"]
    assert found["next_due_at"] > due


def _broken_doorbell(job_id: str, priority: Priority) -> None:
    raise RuntimeError("the doorbell broke")


def test_a_failed_run_does_not_stop_the_next(
    client: TestClient, db_url: str, worker: WorkerProcess, schedule_of: Callable[..., dict[str, Any]]
) -> None:
    template = finished_job(client, job_body(queries=1, documents=3))
    schedule = schedule_of(template["id"])
    first_due = datetime.fromisoformat(client.get(f"/v1/schedules/{schedule['id']}").json()["next_due_at"])
    settings = tick_settings(db_url, worker)
    # the first due time's run fails (an unexpected error handing it to the queue): kept with its error
    with session_factory(db_url)() as session:
        assert schedules.tick(session, settings, _broken_doorbell, first_due) == []
    # ... and the next due time's run goes ahead
    with session_factory(db_url)() as session:
        later = first_due + timedelta(minutes=5)
        assert len(schedules.tick(session, settings, JobQueue(settings).enqueue_plan, later)) == 1

    newest, failed = client.get(f"/v1/schedules/{schedule['id']}").json()["runs"]
    assert "RuntimeError: the doorbell broke" in failed["error"]
    assert newest["error"] is None and wait_for(client, newest["job_id"])["status"] == "completed"
    client.post(f"/v1/jobs/{failed['job_id']}/cancel")  # stored, never sent: no later test's worker takes it


def test_a_run_due_while_the_broker_is_down_is_accepted(
    client: TestClient, db_url: str, worker: WorkerProcess, schedule_of: Callable[..., dict[str, Any]]
) -> None:
    """The database is the source of truth: the run's job is stored queued, no error, and the
    reconciler sends it once the broker is back (issue 9)."""
    template = finished_job(client, job_body(queries=1, documents=3))
    schedule = schedule_of(template["id"])
    first_due = datetime.fromisoformat(client.get(f"/v1/schedules/{schedule['id']}").json()["next_due_at"])
    broker_down = tick_settings(db_url, worker, broker_url=f"redis://127.0.0.1:{free_port()}/0")
    with session_factory(db_url)() as session:
        (job_id,) = schedules.tick(session, broker_down, JobQueue(broker_down).enqueue_plan, first_due)
    (run,) = client.get(f"/v1/schedules/{schedule['id']}").json()["runs"]
    assert run["job_id"] == job_id and run["error"] is None and run["status"] == "queued"
    client.post(f"/v1/jobs/{job_id}/cancel")  # no later test's worker (its reconcile pass) takes it


def test_rerankq_beat_has_a_worker_submit_the_due_run(
    client: TestClient,
    db_url: str,
    worker: WorkerProcess,
    tmp_path: Path,
    schedule_of: Callable[..., dict[str, Any]],
) -> None:
    template = finished_job(client, job_body(queries=1, documents=3))
    schedule = schedule_of(template["id"], cron="0 0 1 1 *")  # next due months away ...
    with session_factory(db_url)() as session:  # ... until its time comes (the clock moved on)
        moved = update(Schedule).where(Schedule.id == schedule["id"])
        session.execute(moved.values(next_due_at=utcnow() - timedelta(minutes=1)))
        session.commit()
    env = {
        **os.environ,
        "RERANK_DATABASE_URL": db_url,
        "RERANK_QUEUE": worker.queue,
        "RERANK_BEAT_SECONDS": "0.5",
    }
    log = tmp_path / "beat.log"
    beat = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "beat"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while not client.get(f"/v1/schedules/{schedule['id']}").json()["runs"]:
            assert time.monotonic() < deadline and beat.poll() is None, log.read_text()
            time.sleep(0.3)
        time.sleep(2)  # more ticks come and go: still one run for the due time
    finally:
        beat.terminate()
        beat.wait(20)
    found = client.get(f"/v1/schedules/{schedule['id']}").json()
    assert len(found["runs"]) == 1 and found["runs"][0]["due_at"].startswith("20")
    assert wait_for(client, found["runs"][0]["job_id"])["status"] == "completed"
    assert found["next_due_at"][5:10] == "01-01"
