"""BERT-type cross-encoders (token type ids, 512 positions) through whole jobs: the pipeline on a
random tiny BERT (SQLite and PostgreSQL), the HTTP API with a real worker serving the trained
MiniLM, and `rerankq run` on the long manual. Raw scores equal FlagReranker's and CrossEncoder's
within 1e-4; a job asking for more tokens than the model reads is cut to its limit, says so, and
reads a long document as more windows instead of failing."""

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from sqlalchemy.orm import Session

from tests.integration.conftest import WorkerProcess, make_client, queue_for
from tests.integration.helpers import results, run_all, wait_for
from tests.integration.test_cli import EXAMPLES, rerankq
from worker import service
from worker.config import Settings
from worker.engine import Reranker
from worker.spec import JobSpec

MANUAL = json.loads((EXAMPLES / "manual_long.jsonl").read_text())
BERT = Settings(model="bert")  # what service.submit_job reads: the model name and the limits
ISSUE_PAIRS = [
    ("How many people live in Berlin?", "Berlin has a population of 3,520,031 registered inhabitants."),
    ("how long to boil water", "The Eiffel Tower is located in Paris, France."),
]


def job_body(**options: Any) -> dict[str, Any]:
    """The long manual's query and documents, plus the issue's two pairs as queries of their own."""
    issue = [
        {"id": f"issue-{n}", "text": query, "documents": [{"id": "d", "text": document}]}
        for n, (query, document) in enumerate(ISSUE_PAIRS)
    ]
    return {"queries": [MANUAL, *issue], "options": options}


def pairs_of(body: dict[str, Any]) -> dict[tuple[str, str], tuple[str, str]]:
    return {(q["id"], d["id"]): (q["text"], d["text"]) for q in body["queries"] for d in q["documents"]}


def references(model: Path, pairs: list[tuple[str, str]], max_length: int) -> list[list[float]]:
    """FlagReranker's and CrossEncoder's raw scores of `pairs`, truncated at `max_length`."""
    from FlagEmbedding import FlagReranker
    from sentence_transformers import CrossEncoder

    flag = FlagReranker(str(model), use_fp16=False, devices="cpu").compute_score(pairs, max_length=max_length)
    cross = CrossEncoder(str(model), device="cpu", max_length=max_length, activation_fn=torch.nn.Identity())
    return [list(flag), [float(s) for s in cross.predict(pairs, show_progress_bar=False)]]


def assert_parity(rows: list[dict[str, Any]], body: dict[str, Any], model: Path, max_length: int) -> None:
    pairs = pairs_of(body)
    keys = [(row["query_id"], row["document_id"]) for row in rows]
    ours = [row["raw_score"] for row in rows]
    for reference in references(model, [pairs[key] for key in keys], max_length):
        assert max(abs(a - b) for a, b in zip(ours, reference, strict=True)) < 1e-4


def test_a_bert_job_scores_as_the_references_and_reads_the_manual_in_windows(
    session: Session, bert_reranker: Reranker, tiny_bert_model: Path
) -> None:
    truncated = job_body(chunking={"enabled": False}, clean_html=False)  # exactly what the references read
    job_id = service.submit_job(session, JobSpec.model_validate(truncated), BERT).id
    run_all(session, job_id, bert_reranker)
    job = service.job_status(session, job_id)
    assert job.options.max_length == 1024 and job.effective_max_length == 512
    assert_parity(results(session, job_id), truncated, tiny_bert_model, 512)

    chunked = job_body()  # the defaults: max_length 1024, windows of 512 tokens
    job_id = service.submit_job(session, JobSpec.model_validate(chunked), BERT).id
    run_all(session, job_id, bert_reranker)
    job = service.job_status(session, job_id)
    assert job.status == "completed" and job.progress.failed == 0
    assert job.effective_max_length == 512
    chunks = {row["document_id"]: row["chunks"] for row in results(session, job_id, query_id=MANUAL["id"])}
    assert chunks["admin-manual"] > 4 and chunks["password-reset"] == 1


def test_the_api_with_a_worker_serving_the_trained_minilm(
    db_url: str, start_own_worker: Callable[..., WorkerProcess], trained_model: Path
) -> None:
    worker = start_own_worker(db_url, f"{queue_for(db_url)}-minilm", model=str(trained_model), task_pairs="2")
    body = job_body(clean_html=False)
    with make_client(db_url, worker.queue, str(trained_model)) as client:
        accepted = client.post("/v1/jobs", json=body)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["effective_max_length"] is None  # no worker has looked at the model yet
        job = wait_for(client, accepted.json()["id"])
        rows = client.get(f"/v1/jobs/{job['id']}/results", params={"limit": 100}).json()["results"]
    assert job["status"] == "completed" and job["progress"]["failed"] == 0
    assert job["options"]["max_length"] == 1024 and job["effective_max_length"] == 256  # model_max_length
    single = [row for row in rows if row["chunks"] == 1]
    assert {row["query_id"] for row in single} >= {"issue-0", "issue-1"}
    assert_parity(single, body, trained_model, 256)
    issue = {row["query_id"]: row["raw_score"] for row in rows if row["query_id"].startswith("issue")}
    assert [round(issue["issue-0"], 3), round(issue["issue-1"], 3)] == [0.643, -2.109]
    assert max(row["chunks"] for row in rows) > 4


def test_run_reads_the_long_manual_on_the_trained_bert(trained_model: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "RERANK_MODEL": str(trained_model),
        "RERANK_DATABASE_URL": f"sqlite:///{tmp_path}/r.db",
    }
    done = rerankq("run", str(EXAMPLES / "manual_long.jsonl"), "-o", "out.jsonl", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "completed: 4 results" in done.stderr  # every document scored, none failed
    rows = {
        row["document_id"]: row for row in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())
    }
    assert rows["admin-manual"]["chunks"] > 4
    best = rows["admin-manual"]["best_chunk"]
    manual = {d["id"]: d["text"] for d in MANUAL["documents"]}
    assert best["text"] == manual["admin-manual"][best["start"] : best["end"]]


def test_run_on_a_missing_file_says_so_in_one_line(tmp_path: Path) -> None:
    done = rerankq("run", str(tmp_path / "missing.jsonl"), env=dict(os.environ), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"rerankq: {tmp_path / 'missing.jsonl'}: No such file or directory\n"
