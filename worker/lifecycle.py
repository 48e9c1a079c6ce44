"""Where a job and a batch may go next: their status enums and transition tables, and the
priorities a job runs at. Plain values with no tables behind them, so input validation and the
store share them without the validation importing the tables."""

from enum import StrEnum
from typing import TypeVar


class JobStatus(StrEnum):
    queued = "queued"  #: stored, waiting for a worker to plan it
    running = "running"  #: planned into batches; batches are being scored
    completed = "completed"  #: every batch finished, results ranked
    failed = "failed"  #: every batch failed
    cancelled = "cancelled"  #: stopped by a client; what was scored stays


JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.queued: frozenset({JobStatus.running, JobStatus.failed, JobStatus.cancelled}),
    JobStatus.running: frozenset({JobStatus.completed, JobStatus.failed, JobStatus.cancelled}),
    JobStatus.completed: frozenset(),
    JobStatus.failed: frozenset(),
    JobStatus.cancelled: frozenset(),
}
FINISHED = frozenset({JobStatus.completed, JobStatus.failed, JobStatus.cancelled})


class BatchStatus(StrEnum):
    pending = "pending"  #: planned, not yet on the queue (a job keeps only a few batches queued)
    queued = "queued"  #: on the queue
    running = "running"  #: leased to a worker, which renews the lease while it scores
    done = "done"  #: its results are stored
    failed = "failed"  #: gave up: too many deliveries, or an error
    cancelled = "cancelled"  #: not scored because its job was cancelled (its pairs count as cancelled)


# A pending batch may be claimed or finished too: its task may have been enqueued by a worker that
# died before the release committed; a running one may be claimed again once its lease lapsed (or
# by its own holder), and goes back to queued when the reconciler finds its lease lapsed.
BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.pending: frozenset(
        {BatchStatus.queued, BatchStatus.running, BatchStatus.done, BatchStatus.failed, BatchStatus.cancelled}
    ),
    BatchStatus.queued: frozenset(
        {BatchStatus.running, BatchStatus.done, BatchStatus.failed, BatchStatus.cancelled}
    ),
    BatchStatus.running: frozenset(
        {BatchStatus.queued, BatchStatus.running, BatchStatus.done, BatchStatus.failed, BatchStatus.cancelled}
    ),
    BatchStatus.done: frozenset(),
    BatchStatus.failed: frozenset(),
    BatchStatus.cancelled: frozenset(),
}
OPEN_BATCH = (BatchStatus.queued, BatchStatus.running)


Status = TypeVar("Status", JobStatus, BatchStatus)


def may_become(table: dict[Status, frozenset[Status]], new: Status) -> list[Status]:
    """The statuses a row may be in to move to `new` (the WHERE of a guarded UPDATE)."""
    return [old for old, nexts in table.items() if new in nexts]


class Priority(StrEnum):
    high = "high"
    normal = "normal"
    low = "low"
