"""One model, two names: a worker loading a local copy (RERANK_MODEL) under its hub id
(RERANK_MODEL_NAME) serves jobs recorded under either, and never a job of another model."""

import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import WorkerProcess, authed, make_app, queue_for
from tests.integration.helpers import job_body, wait_for

HUB_ID = "rerankq-test/tiny-reranker"  # the name the copy is served under
OTHER = "rerankq-test/another-reranker"


def test_a_local_copy_named_as_its_hub_id_serves_jobs_naming_either(
    db_url: str, start_worker: Callable[..., WorkerProcess], tiny_model: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "models" / "tiny-reranker"
    copy.parent.mkdir()
    copy.symlink_to(tiny_model)
    queue = f"{queue_for(db_url)}-named"
    worker = start_worker(db_url, queue, model=str(copy), model_name=HUB_ID, task_pairs="4")
    by_name = make_app(db_url, queue, HUB_ID)  # an API that knows the model by its hub id
    by_path = make_app(db_url, queue, str(copy))  # one started with the copy's path, unnamed
    with authed(by_name) as named, authed(by_path) as pathed:
        first = named.post("/v1/jobs", json=job_body(2, 5)).json()
        second = pathed.post("/v1/jobs", json=job_body(2, 5)).json()
        assert (first["model"], second["model"]) == (HUB_ID, str(copy))
        assert wait_for(named, first["id"])["status"] == "completed"
        assert wait_for(pathed, second["id"])["status"] == "completed"
        synchronous = pathed.post("/v2/rerank", json={"query": "pandas", "documents": ["a", "b"]})
        assert synchronous.status_code == 200, synchronous.text
        (me,) = [w for w in named.get("/v1/workers").json()["workers"] if w["queue"].startswith(queue + ".")]
    assert (me["model"], me["model_path"]) == (HUB_ID, str(copy))
    assert len(me["queue"].split(",")) == 2  # a batch queue per name
    assert_never_scores_another_model(db_url, queue)
    assert worker.process.poll() is None


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
