"""Tenants take turns on a real worker: one tenant's many jobs do not starve another tenant's one.
All jobs are stored before the worker starts, so it meets the whole backlog at once; which batches
it scored before the lone job finished is read back from the batches' finish times."""

from collections.abc import Callable
from uuid import uuid4

from sqlalchemy import create_engine, func, select

from tests.integration.conftest import WorkerProcess, authed, make_app, queue_for
from tests.integration.helpers import job_body, wait_for
from worker.models import Batch, Job

JOBS, DOCUMENTS, TASK_PAIRS = 6, 80, 4  # each job: 20 batches of 4 pairs


def pairs_scored_by(db_url: str, job_ids: list[str], moment: object) -> int:
    engine = create_engine(db_url)
    with engine.connect() as db:
        stmt = select(func.coalesce(func.sum(Batch.pairs), 0)).where(
            Batch.job_id.in_(job_ids), Batch.status == "done", Batch.finished_at <= moment
        )
        scored = int(db.execute(stmt).scalar_one())
    engine.dispose()
    return scored


def finished_at(db_url: str, job_id: str) -> object:
    engine = create_engine(db_url)
    with engine.connect() as db:
        moment = db.execute(select(Job.finished_at).where(Job.id == job_id)).scalar_one()
    engine.dispose()
    return moment


def test_one_tenants_many_jobs_do_not_starve_anothers_one(
    db_url: str, start_own_worker: Callable[..., WorkerProcess], tiny_model: object
) -> None:
    queue = f"{queue_for(db_url)}-fair-{uuid4().hex[:6]}"
    app = make_app(db_url, queue, str(tiny_model))
    suffix = uuid4().hex[:6]
    with (
        authed(app, f"busy-{suffix}", admin=False) as busy,
        authed(app, f"lone-{suffix}", admin=False) as lone,
    ):
        many = [busy.post("/v1/jobs", json=job_body(1, DOCUMENTS)).json()["id"] for _ in range(JOBS)]
        one = lone.post("/v1/jobs", json=job_body(1, DOCUMENTS)).json()["id"]  # submitted last
        start_own_worker(db_url, queue, task_pairs=str(TASK_PAIRS))
        assert wait_for(lone, one, timeout=180)["status"] == "completed"
        busy_pairs = pairs_scored_by(db_url, many, finished_at(db_url, one))
        # Taking turns by tenant, the lone job's 20 batches alternate with the busy tenant's: about
        # 80 of its pairs (plus what was scored before the lone job's plan ran). Taking turns only
        # by job, it would get one turn in seven: nearly all 6 x 80 = 480 pairs first (measured on
        # the 40-document version of this test: 88 of 240 by tenant, all 240 by job).
        assert busy_pairs <= JOBS * DOCUMENTS // 2, busy_pairs
        for job_id in many:
            assert wait_for(busy, job_id, timeout=180)["status"] == "completed"
