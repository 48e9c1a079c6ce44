"""The transition tables: which statuses a guarded UPDATE may move a job or a batch from."""

from worker.lifecycle import BATCH_TRANSITIONS, FINISHED, JOB_TRANSITIONS, BatchStatus, JobStatus, may_become


def test_jobs_move_forward_only_and_finished_jobs_stay() -> None:
    assert may_become(JOB_TRANSITIONS, JobStatus.running) == [JobStatus.queued]
    assert set(may_become(JOB_TRANSITIONS, JobStatus.cancelled)) == {JobStatus.queued, JobStatus.running}
    assert all(not JOB_TRANSITIONS[status] for status in FINISHED)


def test_a_batch_is_released_from_pending_and_claimed_again_when_redelivered() -> None:
    assert may_become(BATCH_TRANSITIONS, BatchStatus.queued) == [BatchStatus.pending, BatchStatus.running]
    open_or_pending = {BatchStatus.pending, BatchStatus.queued, BatchStatus.running}
    assert set(may_become(BATCH_TRANSITIONS, BatchStatus.running)) == open_or_pending
    assert set(may_become(BATCH_TRANSITIONS, BatchStatus.done)) == open_or_pending
    assert not BATCH_TRANSITIONS[BatchStatus.done] and not BATCH_TRANSITIONS[BatchStatus.failed]
