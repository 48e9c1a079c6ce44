"""The reconciler's pass on SQLite and PostgreSQL with the real Redis broker: what the database says
is queued but the broker lost is sent again (once), lapsed leases go back to the queue, pending
batches are released, finished jobs are finalized; attempts are left alone."""

import os
import socket
import subprocess
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import update
from sqlalchemy.orm import Session

from tests.integration.conftest import QUEUE, REDIS_URL
from tests.integration.helpers import limits, run_all, submit
from worker import leases, pipeline, service
from worker.config import Settings
from worker.engine import Reranker
from worker.leases import Lease
from worker.models import Batch, Job, utcnow
from worker.queue import JobQueue
from worker.reconcile import WEBHOOK_GRACE, reconcile


@pytest.fixture
def doorbell(db_url: str) -> Iterator[JobQueue]:
    queue = f"{QUEUE}-reconcile-{db_url.split(':')[0]}-{os.urandom(3).hex()}"
    yield JobQueue(Settings(broker_url=REDIS_URL, queue=queue))
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(*client.keys(f"{queue}*") or ["none"])


def test_a_pass_repairs_each_kind_of_drift_once(session: Session, doorbell: JobQueue) -> None:
    job_id = submit(session, queries=1, documents=8)  # the plan message never reached this queue
    assert job_id in reconcile(session, limits(2, queued_batches=2), doorbell).replanned
    assert job_id not in reconcile(session, limits(), doorbell).replanned

    planned = pipeline.plan_job(session, job_id, limits(2, queued_batches=2)).batches  # queued, never sent
    assert leases.claim_batch(session, planned[0], Lease("dead", -1)) is not None  # a dead holder
    session.commit()
    done = reconcile(session, limits(2, queued_batches=2), doorbell)
    assert planned[0] in done.returned and set(planned) <= set(done.resent)
    assert set(planned) <= doorbell.view({"tiny"}).batches
    again = reconcile(session, limits(2, queued_batches=2), doorbell)
    assert not set(planned) & set(again.resent)  # the broker holds them now
    attempts = {b: session.get(Batch, b).attempts for b in planned}  # type: ignore[union-attr]
    assert attempts == {planned[0]: 1, planned[1]: 0}  # a re-send is not an attempt


def test_unreleased_batches_lost_messages_and_unfinalized_jobs(
    session: Session, doorbell: JobQueue, reranker: Reranker
) -> None:
    job_id = submit(session, queries=1, documents=6)
    one_at_a_time = limits(2, queued_batches=1)
    (first,) = pipeline.plan_job(session, job_id, one_at_a_time).batches
    pipeline.score_batch(session, first, reranker, one_at_a_time)
    session.rollback()  # the worker died before its release committed: the next batch stays pending
    done = reconcile(session, one_at_a_time, doorbell)
    (second,) = [b for b in done.released if session.get(Batch, b).job_id == job_id]  # type: ignore[union-attr]
    assert second in done.resent
    (third,) = pipeline.score_batch(session, second, reranker, one_at_a_time).batches
    session.commit()  # released, but its message was lost
    assert third in reconcile(session, one_at_a_time, doorbell).resent
    assert pipeline.score_batch(session, third, reranker, one_at_a_time).finalize == job_id
    session.commit()  # the finalize message was lost
    assert job_id in reconcile(session, one_at_a_time, doorbell).finalized
    job = service.job_status(session, job_id)
    assert (job.status, job.progress.done, job.progress.failed) == ("completed", 6, 0)


def test_a_starting_worker_frees_at_once_what_dead_workers_of_its_host_held(
    session: Session, doorbell: JobQueue
) -> None:
    """Leases still running, but their holders are gone from this host (a pid that exited, or our
    own pid under an older tag: a restarted container). Live holders and other hosts' keep theirs."""
    host, me = socket.gethostname(), os.getpid()
    exited = subprocess.Popen(["true"])
    exited.wait()
    holders = {
        "exited": f"{host}-{exited.pid}-aaaaaa",
        "restarted": f"{host}-{me}-bbbbbb",
        "alive": f"{host}-{os.getppid()}-cccccc",
        "elsewhere": f"another-host-{exited.pid}-dddddd",
    }
    job_id = submit(session, queries=1, documents=8)
    planned = pipeline.plan_job(session, job_id, limits(2, queued_batches=4)).batches
    held = dict(zip(holders, planned, strict=True))
    for who, batch in held.items():
        assert leases.claim_batch(session, batch, Lease(holders[who], 300)) is not None
    session.commit()
    done = reconcile(session, limits(2, queued_batches=4), doorbell, starting=f"{host}-{me}-eeeeee")
    assert sorted(set(done.returned) & set(planned)) == sorted([held["exited"], held["restarted"]])
    assert not set(planned) & set(reconcile(session, limits(), doorbell).returned)  # the others' leases run


def test_a_lost_webhook_is_queued_once_while_its_task_waits(
    session: Session, doorbell: JobQueue, reranker: Reranker
) -> None:
    """A finished job whose webhook was never tried is queued by a pass; later passes see its task
    waiting (no worker free) and queue no second one."""
    job_id = submit(session, queries=1, documents=2, callback_url="http://127.0.0.1:9/hook")
    run_all(session, job_id, reranker)  # closed here: nobody ran its finish hook
    session.execute(update(Job).where(Job.id == job_id).values(finished_at=utcnow() - 2 * WEBHOOK_GRACE))
    session.commit()
    assert job_id in reconcile(session, limits(), doorbell).webhooks
    assert job_id in doorbell.view(set()).webhooks
    assert job_id not in reconcile(session, limits(), doorbell).webhooks
