"""A worker killed mid-job (SIGKILL, as the OOM killer does) loses no work and writes no duplicate:
its unacknowledged batch is delivered again to the next worker and stored once."""

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.integration.conftest import WorkerProcess, make_client, queue_for
from tests.integration.helpers import job_body, wait_for
from worker.lifecycle import BatchStatus
from worker.models import Batch, Result

RUNNING = select(Batch.id).where(Batch.status == BatchStatus.running).limit(1)


def _current(session: Session, statement: Any) -> Any:
    """A value read in a fresh transaction, so a poll sees what the worker committed since."""
    value = session.scalar(statement)
    session.rollback()
    return value


def kill_mid_batch(session: Session, job_id: str, start: Callable[[], WorkerProcess]) -> int:
    """Start a worker and SIGKILL it while it holds a batch (claimed, not finished); a kill that
    lands between two batches leaves nothing to re-deliver, so try again. The killed batch's id."""
    for _ in range(10):
        worker = start()
        deadline = time.monotonic() + 60
        while (held := _current(session, RUNNING.where(Batch.job_id == job_id))) is None:
            assert time.monotonic() < deadline, "no worker took a batch"
            time.sleep(0.005)
        worker.kill()
        if _current(session, select(Batch.status).where(Batch.id == held)) == BatchStatus.running:
            return int(held)
    raise AssertionError("no kill landed inside a batch in 10 tries; make the batches longer")


def test_killed_worker_loses_no_job_and_duplicates_nothing(
    db_url: str, session: Session, start_worker: Callable[..., WorkerProcess]
) -> None:
    queue = queue_for(db_url) + "-loss"
    settings = {"task_pairs": "40", "visibility_timeout": "2"}
    body = job_body(queries=3, documents=400)
    for query in body["queries"]:
        for document in query["documents"]:
            document["text"] *= 8
    with make_client(db_url, queue) as client:
        job = client.post("/v1/jobs", json=body).json()
        killed = kill_mid_batch(session, job["id"], lambda: start_worker(db_url, queue, **settings))
        progress = client.get(f"/v1/jobs/{job['id']}").json()["progress"]
        assert progress["done"] < progress["total"], "job finished before the kill; make it bigger"

        start_worker(db_url, queue, **settings)
        done = wait_for(client, job["id"], timeout=120)
    assert done["status"] == "completed", done
    assert done["progress"] == done["progress"] | {"total": 1200, "done": 1200, "failed": 0}
    stored = session.scalar(select(func.count()).select_from(Result).where(Result.job_id == job["id"]))
    assert stored == 1200
    redelivered = session.scalar(select(Batch.attempts).where(Batch.id == killed))
    assert redelivered is not None and redelivered >= 2  # the killed worker's batch ran again
