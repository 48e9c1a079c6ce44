"""One model, two names: a worker loading a local copy (RERANK_MODEL) under its hub id
(RERANK_MODEL_NAME) serves jobs recorded under either, and never a job of another model."""

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from tests.integration.conftest import WorkerProcess, authed, make_app, queue_for
from tests.integration.helpers import job_body, limits, wait_for
from worker import pipeline, service
from worker.config import Settings
from worker.engine import load_configured
from worker.spec import JobSpec

HUB_ID = "rerankq-test/tiny-reranker"  # the name the copy is served under
OTHER = "rerankq-test/another-reranker"


@pytest.fixture(scope="module")
def named_worker(
    db_url: str,
    start_worker: Callable[..., WorkerProcess],
    tiny_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    """A worker of a local copy of the tiny model (RERANK_MODEL) served under its hub id
    (RERANK_MODEL_NAME); stopped with this module: no other test uses its settings."""
    copy = tmp_path_factory.mktemp("models") / "tiny-reranker"
    copy.symlink_to(tiny_model)
    worker = start_worker(
        db_url, f"{queue_for(db_url)}-named", model=str(copy), model_name=HUB_ID, task_pairs="4"
    )
    yield worker
    worker.stop()


def test_a_local_copy_named_as_its_hub_id_serves_jobs_naming_either(
    db_url: str, named_worker: WorkerProcess
) -> None:
    queue, copy = named_worker.queue, named_worker.model
    by_name = make_app(db_url, queue, HUB_ID)  # an API that knows the model by its hub id
    by_path = make_app(db_url, queue, copy)  # one started with the copy's path, unnamed
    with authed(by_name) as named, authed(by_path) as pathed:
        first = named.post("/v1/jobs", json=job_body(2, 5)).json()
        second = pathed.post("/v1/jobs", json=job_body(2, 5)).json()
        assert (first["model"], second["model"]) == (HUB_ID, copy)
        assert wait_for(named, first["id"])["status"] == "completed"
        assert wait_for(pathed, second["id"])["status"] == "completed"
        synchronous = pathed.post("/v2/rerank", json={"query": "pandas", "documents": ["a", "b"]})
        assert synchronous.status_code == 200, synchronous.text
        (me,) = [w for w in named.get("/v1/workers").json()["workers"] if w["queue"].startswith(queue + ".")]
    assert (me["model"], me["model_path"]) == (HUB_ID, copy)
    assert len(me["queue"].split(",")) == 2  # a batch queue per name
    assert_never_scores_another_model(db_url, queue)
    assert named_worker.process.poll() is None


def test_jobs_naming_either_name_share_the_score_cache(db_url: str, named_worker: WorkerProcess) -> None:
    """The cache keys a model by the name jobs and heartbeats give it (RERANK_MODEL_NAME) and its
    weights: a job naming the path it was loaded from reuses a job naming its hub id, and back."""
    body = job_body(2, 5, cache=True)
    by_name = make_app(db_url, named_worker.queue, HUB_ID)
    by_path = make_app(db_url, named_worker.queue, named_worker.model)
    with authed(by_name) as named, authed(by_path) as pathed:
        first = wait_for(named, named.post("/v1/jobs", json=body).json()["id"])
        again = wait_for(pathed, pathed.post("/v1/jobs", json=body).json()["id"])
        third = wait_for(named, named.post("/v1/jobs", json=body).json()["id"])
    assert [job["status"] for job in (first, again, third)] == ["completed"] * 3
    assert [job["progress"]["cached"] for job in (first, again, third)] == [0, 10, 10]


def test_a_job_scored_in_process_reuses_the_scores_kept_under_the_served_name(
    session: Session, tiny_model: Path
) -> None:
    """`rerankq run` and a worker's synchronous jobs score where they plan, with no heartbeat to
    ask: their own identity keys the cache by the served name too."""
    settings = Settings(model=str(tiny_model), model_name="rerankq-test/in-process", device="cpu")
    reranker = load_configured(settings)
    body = job_body(2, 3, cache=True)
    for query in body["queries"]:
        query["text"] += " (scored in process)"  # texts no worker's job has kept
    cached = []
    for _ in range(2):
        job = service.submit_job(session, JobSpec.model_validate(body), settings)
        pipeline.run_job(session, job.id, reranker, limits())
        cached.append(service.job_status(session, job.id).progress.cached)
    assert cached == [0, 6]


def assert_never_scores_another_model(db_url: str, queue: str) -> None:
    """The worker plans a job of another model (plans need no model) but never scores it: the job
    says no live worker serves its model."""
    with authed(make_app(db_url, queue, OTHER, stall_seconds=1)) as client:
        job_id = client.post("/v1/jobs", json=job_body(1, 4)).json()["id"]
        deadline = time.monotonic() + 30
        while not (job := client.get(f"/v1/jobs/{job_id}").json())["stalled"]:
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    assert job["progress"]["done"] == 0
    assert job["stalled_reason"] == f"no live worker serves model {OTHER}"
