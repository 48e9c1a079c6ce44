"""A job's rate and ETA (service.job_status) from its batches' finish times, on SQLite and PostgreSQL."""

from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tests.integration.helpers import run_all, submit
from worker import service
from worker.engine import Reranker
from worker.lifecycle import BatchStatus, JobStatus
from worker.models import Batch, Job, utcnow


def rewound(session: Session, reranker: Reranker, started_ago: float) -> tuple[str, list[tuple[int, int]]]:
    """A scored job made to look running again, started `started_ago` seconds ago, no batch
    finished yet; its (batch id, pairs)."""
    job_id = submit(session, queries=2, documents=10)
    run_all(session, job_id, reranker, task_pairs=5)
    session.execute(update(Batch).where(Batch.job_id == job_id).values(status="pending", finished_at=None))
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(
            status=JobStatus.running,
            done_pairs=0,
            finished_at=None,
            started_at=utcnow() - timedelta(seconds=started_ago),
        )
    )
    batches = session.execute(select(Batch.id, Batch.pairs).where(Batch.job_id == job_id).order_by(Batch.id))
    return job_id, [(batch_id, pairs) for batch_id, pairs in batches]


def finish(session: Session, job_id: str, batches: dict[int, float]) -> None:
    """Mark batches done `seconds` ago, and count their pairs as the job's."""
    now = utcnow()
    for batch_id, ago in batches.items():
        session.execute(
            update(Batch)
            .where(Batch.id == batch_id)
            .values(status=BatchStatus.done, finished_at=now - timedelta(seconds=ago))
        )
    done = select(Batch.pairs).where(Batch.job_id == job_id, Batch.status == BatchStatus.done)
    session.execute(update(Job).where(Job.id == job_id).values(done_pairs=sum(session.scalars(done))))
    session.expire_all()


def test_rate_is_the_last_minutes_pace_and_eta_follows(session: Session, reranker: Reranker) -> None:
    job_id, batches = rewound(session, reranker, started_ago=600)
    (first, p0), (second, p1), (third, p2) = batches[:3]
    progress = service.job_status(session, job_id).progress.model_dump()
    assert progress["pairs_per_second"] is None and progress["eta_seconds"] is None  # nothing scored yet

    finish(session, job_id, {first: 300, second: 20, third: 10})
    progress = service.job_status(session, job_id).progress.model_dump()
    rate = (p1 + p2) / 60  # the batch of five minutes ago is not in the window
    assert progress["pairs_per_second"] == pytest.approx(rate)
    assert progress["eta_seconds"] == pytest.approx((20 - p0 - p1 - p2) / rate)


def test_rate_falls_back_to_the_whole_run_when_the_last_minute_was_idle(
    session: Session, reranker: Reranker
) -> None:
    job_id, batches = rewound(session, reranker, started_ago=600)
    finish(session, job_id, {batches[0][0]: 300, batches[1][0]: 100})
    done = batches[0][1] + batches[1][1]
    progress = service.job_status(session, job_id).progress.model_dump()
    assert progress["pairs_per_second"] == pytest.approx(done / 600, rel=1e-3)
    assert progress["eta_seconds"] == pytest.approx((20 - done) / (done / 600), rel=1e-3)


def test_a_young_job_is_measured_since_it_started(session: Session, reranker: Reranker) -> None:
    job_id, batches = rewound(session, reranker, started_ago=30)
    finish(session, job_id, {batches[0][0]: 20, batches[1][0]: 5})
    rate = service.job_status(session, job_id).progress.pairs_per_second
    assert rate == pytest.approx((batches[0][1] + batches[1][1]) / 30, rel=1e-2)


def test_a_finished_job_reports_its_whole_run(session: Session, reranker: Reranker) -> None:
    job_id, batches = rewound(session, reranker, started_ago=600)
    finish(session, job_id, {batch_id: 5 for batch_id, _ in batches})
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(status=JobStatus.completed, finished_at=utcnow() - timedelta(seconds=200))
    )
    session.expire_all()
    progress = service.job_status(session, job_id).progress.model_dump()
    assert progress["pairs_per_second"] == pytest.approx(20 / 400, rel=1e-3)
    assert progress["eta_seconds"] == 0
