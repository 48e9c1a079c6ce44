"""A worker killed mid-job (SIGKILL, as the OOM killer does) loses no work and writes no duplicate:
its unacknowledged batch is delivered again to the next worker and stored once."""

import time
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.conftest import WorkerProcess, make_client, queue_for
from tests.integration.helpers import job_body, wait_for
from worker.models import Batch, Result


def test_killed_worker_loses_no_job_and_duplicates_nothing(
    db_url: str, session: Session, start_worker: Callable[..., WorkerProcess]
) -> None:
    queue = queue_for(db_url) + "-loss"
    settings = {"task_pairs": "40", "visibility_timeout": "2"}
    first = start_worker(db_url, queue, **settings)
    body = job_body(queries=3, documents=400)
    for query in body["queries"]:
        for document in query["documents"]:
            document["text"] *= 8
    with make_client(db_url, queue) as client:
        job = client.post("/v1/jobs", json=body).json()
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{job['id']}").json()["progress"]["done"] == 0:
            assert time.monotonic() < deadline, "the first worker scored nothing"
            time.sleep(0.05)
        first.kill()
        progress = client.get(f"/v1/jobs/{job['id']}").json()["progress"]
        assert progress["done"] < progress["total"], "job finished before the kill; make it bigger"

        start_worker(db_url, queue, **settings)
        done = wait_for(client, job["id"], timeout=120)
    assert done["status"] == "completed", done
    assert done["progress"] == done["progress"] | {"total": 1200, "done": 1200, "failed": 0}
    stored = session.scalar(select(func.count()).select_from(Result).where(Result.job_id == job["id"]))
    assert stored == 1200
    redelivered = session.scalar(select(func.max(Batch.attempts)).where(Batch.job_id == job["id"]))
    assert redelivered is not None and redelivered >= 2  # the killed worker's batch ran again
