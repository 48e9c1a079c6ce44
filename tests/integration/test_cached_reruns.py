"""A rerun's cached pairs at the pipeline's level, on SQLite and PostgreSQL: they get no batch, and
their results are written once, when the job is finalized or cancelled, ranked among the pairs it
scored; a finalize run twice (also at once) and a prune while the rerun runs leave them right."""

import json
import threading
from dataclasses import replace
from uuid import uuid4

from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.integration.helpers import TINY, limits
from worker import pipeline, score_cache, service
from worker.config import Settings
from worker.db import session_factory
from worker.engine import Reranker
from worker.models import Document, Query, Result
from worker.spec import CollectionJobSpec
from worker.uploads import CollectionUpdate, CollectionUpload

Ranked = dict[tuple[str, str], tuple[float, int | None, bool]]  # (query, document) -> score, rank, cached


def _changed_collection(session: Session, reranker: Reranker) -> CollectionJobSpec:
    """A job over a new collection of 8 documents, run once (its scores kept), then one document
    edited: run again, 2 of its 16 pairs are scored and 14 come from the cache."""
    tag = uuid4().hex[:8]
    upload = CollectionUpload(session, f"kb-{tag}", Settings(max_document_chars=10_000))
    upload.add(
        [(i + 1, json.dumps({"id": f"d{i}", "text": f"{tag} note {i} on joins"}).encode()) for i in range(8)]
    )
    kb = upload.finish()[0].id
    spec = CollectionJobSpec.model_validate(
        {"collection": kb, "queries": [{"id": "a", "text": "hash joins"}, {"id": "b", "text": "sorting"}]}
    )
    first, batches = _planned(session, spec, reranker)
    _scored(session, batches, reranker)
    assert pipeline.finalize_job(session, first)
    update = CollectionUpdate(session, kb, Settings(max_document_chars=10_000))
    update.add([(1, json.dumps({"id": "d3", "text": f"{tag} note 3 rewritten"}).encode())])
    update.finish()
    return spec


def _planned(session: Session, spec: CollectionJobSpec, reranker: Reranker) -> tuple[str, list[int]]:
    """A job submitted and planned by a worker that serves its model (TINY's name): it uses the cache."""
    job_id = service.submit_job(session, spec, TINY).id
    own = replace(pipeline.identity_of(reranker), name=TINY.model)
    planned = pipeline.plan_job(session, job_id, limits(task_pairs=2, queued_batches=9), own)
    return job_id, planned.batches


def _scored(session: Session, batches: list[int], reranker: Reranker) -> None:
    for batch in batches:
        pipeline.score_batch(session, batch, reranker, limits(task_pairs=2, queued_batches=9))


def _results(session: Session, job_id: str) -> Ranked:
    stmt = (
        select(Query.client_id, Document.client_id, Result.raw_score, Result.rank, Result.cached)
        .join(Query, Query.id == Result.query_id)
        .join(Document, Document.id == Result.document_id)
        .where(Result.job_id == job_id)
    )
    rows = session.execute(stmt).all()
    found = {(q, d): (score, rank, cached) for q, d, score, rank, cached in rows}
    assert len(found) == len(rows)  # one result per pair
    return found


def _from_scratch(session: Session, spec: CollectionJobSpec, reranker: Reranker) -> Ranked:
    scratch = spec.model_copy(update={"options": spec.options.model_copy(update={"cache": False})})
    job_id = service.submit_job(session, scratch, TINY).id
    assert pipeline.run_job(session, job_id, reranker, limits())
    return _results(session, job_id)


def _assert_ranked_as(cached: Ranked, scratch: Ranked) -> None:
    assert cached.keys() == scratch.keys()
    for key, (score, rank, _) in cached.items():
        assert abs(score - scratch[key][0]) < 1e-5 and rank == scratch[key][1], key


def test_a_rerun_writes_its_cached_results_once_ranked_as_a_run_from_scratch(
    session: Session, reranker: Reranker
) -> None:
    spec = _changed_collection(session, reranker)
    job_id, batches = _planned(session, spec, reranker)
    job = service.job_status(session, job_id)
    assert (job.progress.total, job.progress.cached, job.progress.done, len(batches)) == (16, 14, 14, 1)
    assert _results(session, job_id) == {}  # nothing written for the cached pairs before finalize
    _scored(session, batches, reranker)
    assert pipeline.finalize_job(session, job_id)
    assert not pipeline.finalize_job(session, job_id)  # delivered again: nothing written twice
    rerun = _results(session, job_id)
    assert sum(cached for _, _, cached in rerun.values()) == 14
    assert {d for (_, d), (_, _, cached) in rerun.items() if not cached} == {"d3"}
    _assert_ranked_as(rerun, _from_scratch(session, spec, reranker))


def test_two_finalizes_at_once_close_the_rerun_once(
    db_url: str, session: Session, reranker: Reranker
) -> None:
    spec = _changed_collection(session, reranker)
    job_id, batches = _planned(session, spec, reranker)
    _scored(session, batches, reranker)
    start, closed = threading.Barrier(2), []

    def finalize() -> None:
        with session_factory(db_url)() as own:
            start.wait()
            closed.append(pipeline.finalize_job(own, job_id))

    threads = [threading.Thread(target=finalize) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(closed) == [False, True]
    session.expire_all()
    _assert_ranked_as(_results(session, job_id), _from_scratch(session, spec, reranker))


def test_a_rerun_cancelled_before_scoring_keeps_its_cached_results_ranked(
    session: Session, reranker: Reranker
) -> None:
    spec = _changed_collection(session, reranker)
    job_id, _ = _planned(session, spec, reranker)
    service.cancel_job(session, job_id)
    kept = _results(session, job_id)
    assert len(kept) == 14 and all(cached for _, _, cached in kept.values())
    for query in "ab":
        assert sorted(rank for (q, _), (_, rank, _) in kept.items() if q == query) == list(range(1, 8))


def test_a_prune_while_a_rerun_runs_keeps_what_its_finalize_reads(
    session: Session, reranker: Reranker
) -> None:
    spec = _changed_collection(session, reranker)
    job_id, batches = _planned(session, spec, reranker)
    assert score_cache.prune(session, None, spec.collection) == 0  # its entries: the rerun's key
    session.commit()
    _scored(session, batches, reranker)
    assert pipeline.finalize_job(session, job_id)
    assert len(_results(session, job_id)) == 16
