"""The pipeline's plain functions on SQLite and PostgreSQL, without a broker: plan, score,
finalize, and the guarantees a re-delivered or crashing task relies on."""

import itertools
import json
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from benchmarks.common import make_pairs
from benchmarks.pipeline import job_batches, job_body
from tests.integration.helpers import TINY, job_spec, limits, results, run_all, submit
from worker import batch_store, heartbeats, leases, pipeline, service
from worker.config import Settings
from worker.engine import Reranker
from worker.errors import Conflict, InvalidInput, NotFound
from worker.heartbeats import WorkerInfo
from worker.leases import Lease
from worker.lifecycle import BatchStatus
from worker.models import Batch, BatchDocument, CollectionDocument, Document, Result, Worker, utcnow
from worker.spec import CollectionJobSpec, JobSpec
from worker.uploads import CollectionUpload


def test_job_runs_to_ranked_results(session: Session, reranker: Reranker) -> None:
    job_id = submit(session, queries=3, documents=7)
    assert service.job_status(session, job_id).status == "queued"
    run_all(session, job_id, reranker)
    job = service.job_status(session, job_id).model_dump()
    assert job["status"] == "completed"
    assert job["progress"] | {"pairs_per_second": None} == {
        "total": 21,
        "done": 21,
        "cached": 0,
        "failed": 0,
        "cancelled": 0,
        "pairs_per_second": None,
        "eta_seconds": 0.0,
    }
    assert job["started_at"] <= job["finished_at"]
    rows = results(session, job_id, limit=4)
    assert [(r["query_id"], r["rank"]) for r in rows] == [(f"q{q}", r) for q in range(3) for r in range(1, 8)]
    for query in ("q0", "q1", "q2"):
        scores = [r["raw_score"] for r in rows if r["query_id"] == query]
        assert scores == sorted(scores, reverse=True)
    expected = reranker.score(
        [(q.text, d.text) for q in job_spec(3, 7).queries for d in q.documents], max_length=1024
    )
    assert sorted(r["raw_score"] for r in rows) == pytest.approx(sorted(expected), abs=1e-5)


def test_scores_threshold_top_k_and_raw_scores(session: Session, reranker: Reranker) -> None:
    job_id = submit(session, documents=6, top_k=2, threshold=0.7, normalize=False)
    run_all(session, job_id, reranker)
    rows = results(session, job_id)
    assert [r["rank"] for r in rows] == [1, 2, 1, 2]
    for row in rows:
        assert row["score"] == row["raw_score"]
        assert row["relevant"] == (1 / (1 + math.exp(-row["raw_score"])) > 0.7)
    only = results(session, job_id, query_id="q1")
    assert {r["query_id"] for r in only} == {"q1"}
    with pytest.raises(NotFound):
        service.results_page(session, job_id, query_id="nope")


def test_redelivered_batch_writes_no_duplicates(session: Session, reranker: Reranker) -> None:
    job_id = submit(session, documents=5)
    batches = pipeline.plan_job(session, job_id, limits(4, queued_batches=10)).batches
    assert len(batches) == 3
    assert (
        pipeline.plan_job(session, job_id, limits(4, queued_batches=10)).batches == batches
    )  # re-delivered: nothing new
    for batch_id in batches + batches:  # every batch delivered twice
        pipeline.score_batch(session, batch_id, reranker, limits())
    batch_store.record_results(session, batches[0], job_id, [])  # a late duplicate write moves no counter
    pipeline.finalize_job(session, job_id)
    job = service.job_status(session, job_id).model_dump()
    assert job["progress"]["done"] == 10
    count = session.scalar(select(func.count()).select_from(Result).where(Result.job_id == job_id))
    assert count == 10


def test_batch_that_keeps_killing_its_worker_is_given_up(session: Session, reranker: Reranker) -> None:
    job_id = submit(session, queries=1, documents=4)
    first, second = pipeline.plan_job(session, job_id, limits(2)).batches
    for dead in range(3):  # three workers that died mid-batch (claimed, lease lapsed, never finished)
        assert leases.claim_batch(session, first, Lease(f"dead-{dead}", -1)) is not None
        session.commit()
    assert pipeline.score_batch(session, first, reranker, limits()) == pipeline.Followups([], None, "tiny")
    assert pipeline.score_batch(session, second, reranker, limits()).finalize == job_id
    pipeline.finalize_job(session, job_id)
    job = service.job_status(session, job_id).model_dump()
    assert (job["status"], job["progress"]["done"], job["progress"]["failed"]) == ("completed", 2, 2)
    failed = session.get(Batch, first)
    assert failed is not None
    assert failed.status == BatchStatus.failed and failed.attempts == 4
    assert "gave up after 3 attempts" in (failed.error or "")


def test_job_whose_every_batch_fails_is_failed(session: Session, reranker: Reranker) -> None:
    job_id = submit(session, queries=1, documents=2)
    (batch,) = pipeline.plan_job(session, job_id, limits(10)).batches
    assert pipeline.score_batch(session, batch, reranker, limits(max_attempts=0)).finalize == job_id
    pipeline.finalize_job(session, job_id)
    job = service.job_status(session, job_id).model_dump()
    assert job["status"] == "failed"
    assert job["error"] == "every batch failed; the first: gave up after 0 attempts"


def test_cancel_keeps_partial_results(session: Session, reranker: Reranker) -> None:
    job_id = submit(session, queries=1, documents=6)
    first, *rest = pipeline.plan_job(session, job_id, limits(2, queued_batches=3)).batches
    assert len(rest) == 2
    pipeline.score_batch(session, first, reranker, limits())
    assert service.cancel_job(session, job_id).status == "cancelled"
    for batch_id in rest:  # batches still queued are skipped once the job is cancelled
        assert pipeline.score_batch(session, batch_id, reranker, limits()).batches == []
    assert [r["rank"] for r in results(session, job_id)] == [1, 2]
    job = service.job_status(session, job_id).model_dump()
    assert job["finished_at"] is not None
    assert {k: job["progress"][k] for k in ("total", "done", "failed", "cancelled")} == {
        "total": 6,
        "done": 2,
        "failed": 0,
        "cancelled": 4,
    }
    statuses = session.scalars(select(Batch.status).where(Batch.job_id == job_id).order_by(Batch.number))
    assert list(statuses) == [BatchStatus.done, BatchStatus.cancelled, BatchStatus.cancelled]
    with pytest.raises(Conflict):
        service.cancel_job(session, job_id)


def test_results_wait_for_the_job_and_cursors_are_checked(session: Session, reranker: Reranker) -> None:
    job_id = submit(session)
    with pytest.raises(Conflict):
        service.results_page(session, job_id)
    run_all(session, job_id, reranker)
    with pytest.raises(InvalidInput) as caught:
        service.results_page(session, job_id, cursor="not-a-cursor")
    assert caught.value.field == "cursor"
    with pytest.raises(NotFound):
        service.job_status(session, "0" * 32)


def test_planning_batches_every_pair_once_longest_first(session: Session) -> None:
    job_id = submit(session, queries=3, documents=7)
    pipeline.plan_job(session, job_id, limits(task_pairs=4, queued_batches=2))
    rows = session.execute(
        select(Batch.number, Batch.pairs, func.length(Document.text))
        .join(BatchDocument, BatchDocument.batch_id == Batch.id)
        .join(Document, Document.id == BatchDocument.document_id)
        .where(Batch.job_id == job_id)
        .order_by(Batch.number)
    ).all()
    assert len(rows) == 21  # every pair in exactly one batch
    sizes = {number: pairs for number, pairs, _ in rows}
    assert sorted(sizes) == list(range(6)) and all(1 <= n <= 4 for n in sizes.values())
    assert sum(sizes.values()) == 21
    by_batch = [[length for number, _, length in rows if number == n] for n in sorted(sizes)]
    assert all(min(a) >= max(b) for a, b in itertools.pairwise(by_batch))  # longest first
    queued = session.scalars(select(Batch.status).where(Batch.job_id == job_id).order_by(Batch.number)).all()
    assert queued == ["queued", "queued"] + ["pending"] * 4  # only queued_batches of them are on the queue


@pytest.fixture
def beat(session: Session) -> Iterator[Callable[..., None]]:
    """beat(name, speed, seen=timedelta(0)): a heartbeat of a worker of the tiny model, `seen` ago,
    at `speed` characters a second; its row is deleted after the test (the database is shared)."""
    names = []

    def beat(name: str, speed: float | None, seen: timedelta = timedelta(0)) -> None:
        info = WorkerInfo(name, TINY.model, TINY.model, "cpu", "float32", "q", datetime.now(UTC), None)
        heartbeats.beat(session, info, speed)
        session.execute(update(Worker).where(Worker.name == name).values(last_seen=utcnow() - seen))
        session.commit()
        names.append(name)

    yield beat
    session.rollback()
    session.execute(delete(Worker).where(Worker.name.in_(names)))
    session.commit()


def test_batches_are_cut_to_the_slowest_live_workers_speed(
    session: Session, db_url: str, beat: Callable[..., None]
) -> None:
    """Cut by time: each batch holds longest-first pairs starting within one span of the characters
    task_seconds takes at the slowest live worker's speed (so its characters but its last pair's fit
    in it), never more than task_max_pairs; a dead worker's speed and a worker without one do not
    count. The pipeline benchmark reads the cut back (job_batches): every pair once."""
    pairs = make_pairs(300, seed=5)
    beat("fast", 40_000.0)
    beat("slow", 20_000.0)
    beat("new", None)
    beat("dead", 1_000.0, seen=timedelta(minutes=5))
    budget = 20_000 * 0.1  # characters a batch: the slow worker's 0.1 s
    job_id = str(service.submit_job(session, JobSpec.model_validate(job_body(pairs)), TINY).id)
    pipeline.plan_job(session, job_id, limits(task_pairs=4, task_seconds=0.1, task_max_pairs=12))
    batches = job_batches(db_url, job_id)
    assert sorted(pair for batch in batches for pair in batch) == sorted(pairs)
    assert_cut_by_characters([[len(document) for _, document in batch] for batch in batches], budget, 12)


def assert_cut_by_characters(lengths: list[list[int]], budget: float, max_pairs: int) -> None:
    """Batches of these document lengths, in the batches' order: longest first, at most
    `max_pairs` each, the characters of all but the shortest under `budget`, and no more batches
    than a new one at each multiple of either limit."""
    assert all(min(a) >= max(b) for a, b in itertools.pairwise(lengths))
    assert all(len(batch) <= max_pairs for batch in lengths)
    assert all(sum(batch) - min(batch) < budget for batch in lengths)
    assert any(4 < len(batch) < max_pairs for batch in lengths)  # cut by characters, not by 4 pairs
    assert len(lengths) <= sum(map(sum, lengths)) // budget + 1 + sum(map(len, lengths)) // max_pairs


def test_a_collection_jobs_batches_are_cut_by_characters_too(
    session: Session, beat: Callable[..., None]
) -> None:
    """A collection job's pairs are numbered from its snapshot, by its collection's texts."""
    texts = [document for _, document in make_pairs(100, seed=5)]
    upload = CollectionUpload(session, "cut", Settings(max_document_chars=100_000))
    upload.add([(i + 1, json.dumps({"id": f"d{i}", "text": text}).encode()) for i, text in enumerate(texts)])
    queries = [{"id": "a", "text": "first"}, {"id": "b", "text": "second"}]
    spec = CollectionJobSpec.model_validate({"collection": upload.finish()[0].id, "queries": queries})
    job_id = service.submit_job(session, spec, TINY).id
    beat("only", 20_000.0)
    pipeline.plan_job(session, job_id, limits(task_pairs=4, task_seconds=0.1, task_max_pairs=12))
    rows = session.execute(
        select(Batch.number, func.length(CollectionDocument.text))
        .join(BatchDocument, BatchDocument.batch_id == Batch.id)
        .join(Document, Document.id == BatchDocument.document_id)
        .join(CollectionDocument, CollectionDocument.id == Document.source_id)
        .where(Batch.job_id == job_id)
        .order_by(Batch.number)
    ).all()
    lengths = [[length for _, length in batch] for _, batch in itertools.groupby(rows, lambda row: row[0])]
    assert sum(map(len, lengths)) == 200
    assert_cut_by_characters(lengths, 20_000 * 0.1, 12)


def test_batches_hold_task_pairs_until_a_worker_has_a_speed(
    session: Session, db_url: str, beat: Callable[..., None]
) -> None:
    beat("new", None)
    beat("dead", 1_000.0, seen=timedelta(minutes=5))
    job_id = submit(session, queries=3, documents=7)
    pipeline.plan_job(session, job_id, limits(task_pairs=4, task_seconds=0.1))
    assert [len(batch) for batch in job_batches(db_url, job_id)] == [4, 4, 4, 4, 4, 1]


def test_a_large_job_refreshes_statistics_when_done(
    session: Session, reranker: Reranker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "LARGE_JOB_PAIRS", 4)
    job_id = submit(session, queries=1, documents=4)
    run_all(session, job_id, reranker)
    assert service.job_status(session, job_id).status == "completed"
    if session.get_bind().dialect.name == "postgresql":  # ANALYZE ran: the planner knows the rows
        analyzed = session.scalar(
            text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'results'")
        )
        assert analyzed is not None


def test_a_worker_killed_before_its_release_commits_loses_no_batch(
    session: Session, reranker: Reranker
) -> None:
    job_id = submit(session, queries=1, documents=8)
    one_at_a_time = limits(2, queued_batches=1)
    (first,) = pipeline.plan_job(session, job_id, one_at_a_time).batches
    (second,) = pipeline.score_batch(session, first, reranker, one_at_a_time).batches
    session.rollback()  # killed after enqueueing `second`, before the release committed
    assert session.get(Batch, second).status == BatchStatus.pending  # type: ignore[union-attr]
    # the re-delivered task releases the same batch again ...
    assert pipeline.score_batch(session, first, reranker, one_at_a_time).batches == [second]
    session.rollback()
    # ... and the task enqueued before the kill still runs it, though it is pending
    queued = [second]
    while queued:
        followups = pipeline.score_batch(session, queued.pop(), reranker, one_at_a_time)
        queued += followups.batches
        session.commit()
        if followups.finalize:
            pipeline.finalize_job(session, followups.finalize)
    job = service.job_status(session, job_id).model_dump()
    assert (job["status"], job["progress"]["done"], job["progress"]["failed"]) == ("completed", 8, 0)
