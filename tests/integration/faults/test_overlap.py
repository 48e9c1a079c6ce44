"""A worker holding two batches at once (RERANK_WORKER_BATCHES=2: one on the model, the next read
and tokenized beside it) keeps the delivery guarantees: SIGKILLed while it holds both, lease expiry
returns both and each pair is scored once; the attempts stay capped; batches delivered twice are
scored once."""

import time

from sqlalchemy import func, select

from tests.integration.faults.conftest import (
    Stack,
    assert_exactly_once,
    current,
    wait_for_job,
    wait_until,
)
from worker.config import Settings
from worker.lifecycle import BatchStatus, Priority
from worker.models import Batch, Job, Result
from worker.queue import JobQueue


def held(stack: Stack, job_id: str) -> list[int]:
    """The job's batches a worker holds (claimed under a lease) now."""
    with stack.session() as session:
        return list(
            session.scalars(
                select(Batch.id).where(Batch.job_id == job_id, Batch.status == BatchStatus.running)
            )
        )


def kill_holding_two(stack: Stack, job_id: str) -> list[int]:
    """Start an overlapping worker and SIGKILL it while it holds two of the job's batches; their ids."""
    for _ in range(10):  # a kill just as one of the two was written leaves one held: try again
        doomed = stack.worker(task_pairs="40", worker_batches="2")
        both = wait_until("two batches held at once", lambda: len(held(stack, job_id)) == 2, 60)
        assert both
        taken = held(stack, job_id)
        doomed.kill()
        if len(taken) == 2 and sorted(held(stack, job_id)) == sorted(taken):
            return taken
    raise AssertionError("no kill landed while two batches were held in 10 tries")


def test_worker_sigkilled_holding_two_batches_loses_neither(stack: Stack) -> None:
    stack.reconciler()
    job_id = stack.submit(queries=3, documents=200, repeat=8)
    taken = kill_holding_two(stack, job_id)
    stack.worker(task_pairs="40", worker_batches="2")
    wait_for_job(stack, job_id, timeout=120)
    batches = {b.id: b for b in assert_exactly_once(stack, job_id, 600)}
    assert [batches[batch].attempts for batch in taken] == [2, 2]  # the lapsed leases were claimed again


def test_attempts_stay_capped_for_batches_a_killed_worker_held(stack: Stack) -> None:
    stack.reconciler()
    job_id = stack.submit(queries=3, documents=200, repeat=8)
    taken = kill_holding_two(stack, job_id)
    stack.worker(task_pairs="40", worker_batches="2", max_attempts="1")
    wait_for_job(stack, job_id, timeout=120)
    with stack.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        batches = {b.id: b for b in session.scalars(select(Batch).where(Batch.job_id == job_id))}
        results, distinct = session.execute(
            select(func.count(), func.count(func.distinct(Result.document_id))).where(Result.job_id == job_id)
        ).one()
    for batch in taken:  # a second claim is over the cap of 1: failed, never scored twice
        assert (batches[batch].status, batches[batch].attempts) == (BatchStatus.failed, 2)
        assert "gave up after 1 attempts" in (batches[batch].error or "")
    assert {b.status for i, b in batches.items() if i not in taken} == {BatchStatus.done}
    failed = sum(batches[batch].pairs for batch in taken)
    assert (job.status, job.done_pairs, job.failed_pairs) == ("completed", 600 - failed, failed)
    assert results == distinct == 600 - failed


def test_batches_delivered_twice_are_scored_once(stack: Stack) -> None:
    job_id = stack.submit(queries=3, documents=200, repeat=4)
    stack.worker(task_pairs="20", worker_batches="2")
    queue = JobQueue(Settings(broker_url=stack.redis.url, queue=stack.queue, model=stack.model))
    sent = set[int]()
    while current(stack, select(Job.finished_at).where(Job.id == job_id)) is None:
        with stack.session() as session:
            open_now = session.scalars(
                select(Batch.id).where(
                    Batch.job_id == job_id, Batch.status.in_([BatchStatus.queued, BatchStatus.running])
                )
            ).all()
        for batch in set(open_now) - sent:  # a second message for each, while the first is queued or held
            queue.send_batch(batch, stack.model, Priority.normal)
            sent.add(batch)
        time.sleep(0.05)
    wait_for_job(stack, job_id, timeout=120)
    batches = assert_exactly_once(stack, job_id, 600)
    assert len(sent) >= len(batches) // 2, "too few batches were sent twice to show anything"
    assert {b.attempts for b in batches} == {1}
