"""Quality against judgements: the held-out DL19 queries reranked by the trained model through the
whole pipeline, measured by the API exactly as ir-measures measures the same rankings; judgements
sent in the body, as JSONL or as a TREC qrels file, and bad ones refused by line with nothing lost."""

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import ir_measures
import pytest
from fastapi.testclient import TestClient

from benchmarks.heldout import HELDOUT, Heldout, load_heldout
from tests.integration.conftest import WorkerProcess, bearer, make_client, queue_for
from tests.integration.helpers import heldout_job, job_body, rerankq, wait_for

QUERIES, CANDIDATES = 3, 50  # of the 21 held-out queries, their first-stage top 50: 150 pairs
MAX_LENGTH = 256
K, MIN_RELEVANCE = 20, 2  # TREC DL: grades 2 and 3 count as relevant for MRR and recall
NDJSON = {"content-type": "application/x-ndjson"}
TEXT = {"content-type": "text/plain"}


@pytest.mark.skipif(not HELDOUT.exists(), reason=f"no held-out data at {HELDOUT}")
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_evaluation_equals_ir_measures_on_the_same_rankings(
    db_url: str, start_own_worker: Callable[..., WorkerProcess], trained_model: Path
) -> None:
    full = load_heldout(limit=QUERIES)
    data = Heldout(tuple(replace(q, candidates=q.candidates[:CANDIDATES]) for q in full.queries), full.qrels)
    worker = start_own_worker(db_url, f"{queue_for(db_url)}-eval", model=str(trained_model), dtype="fp32")
    judged = [(q, d, grade) for q, grades in data.qrels.items() for d, grade in grades.items()]
    first = data.queries[0].query_id  # its judgements come as a TREC qrels file, the rest in the body
    body = {
        **heldout_job(data, MAX_LENGTH),
        "qrels": [{"query_id": q, "document_id": d, "relevance": g} for q, d, g in judged if q != first],
    }
    trec = "".join(f"{q} 0 {d} {g}\n" for q, d, g in judged if q == first)
    with make_client(db_url, worker.queue, str(trained_model)) as client:
        job = client.post("/v1/jobs", json=body).json()
        assert client.post(f"/v1/jobs/{job['id']}/qrels", content=trec, headers=TEXT).status_code == 200
        assert wait_for(client, job["id"], timeout=600)["status"] == "completed"
        found = client.get(
            f"/v1/jobs/{job['id']}/evaluation", params={"k": K, "min_relevance": MIN_RELEVANCE}
        )
        assert found.status_code == 200, found.text
        export = client.get(f"/v1/jobs/{job['id']}/results.jsonl").text
    evaluation = found.json()

    scored = {
        (r["query_id"], r["document_id"]): r["raw_score"]
        for r in (json.loads(line) for line in export.split("\n") if line)
    }
    reranked = data.run([scored[(q.query_id, c.doc_id)] for q in data.queries for c in q.candidates])
    submitted = {q.query_id: {c.doc_id: -float(i) for i, c in enumerate(q.candidates)} for q in data.queries}
    measures = [
        ir_measures.nDCG @ 10,
        ir_measures.RR(rel=MIN_RELEVANCE) @ 10,
        ir_measures.R(rel=MIN_RELEVANCE) @ K,
    ]
    names = ["ndcg_at_10", "mrr_at_10", "recall_at_k"]
    for order, run in (("submitted", submitted), ("reranked", reranked)):
        mean = ir_measures.calc_aggregate(measures, data.qrels, run)
        assert [evaluation[order][n] for n in names] == pytest.approx([mean[m] for m in measures], abs=1e-12)
        for metric in ir_measures.iter_calc(measures, data.qrels, run):
            row = next(q for q in evaluation["queries"] if q["query_id"] == metric.query_id)
            assert row[order][names[measures.index(metric.measure)]] == pytest.approx(metric.value, abs=1e-12)
    assert [q["query_id"] for q in evaluation["queries"]] == [q.query_id for q in data.queries]
    assert evaluation["queries_evaluated"] == QUERIES and evaluation["k"] == K
    # a trained reranker over a bi-encoder's top 100: the comparison measures something
    assert evaluation["reranked"]["ndcg_at_10"] != evaluation["submitted"]["ndcg_at_10"]


def judgement_lines(*rows: tuple[str, str, Any]) -> str:
    return "\n".join(json.dumps({"query_id": q, "document_id": d, "relevance": r}) for q, d, r in rows)


def test_bad_judgements_in_the_body_refuse_the_job(client: TestClient) -> None:
    before = len(client.get("/v1/jobs", params={"limit": 1000}).json()["jobs"])
    for qrels, field in (
        ([{"query_id": "q9", "document_id": "d1", "relevance": 1}], "qrels.0.query_id"),
        ([{"query_id": "q0", "document_id": "d1", "relevance": "high"}], "qrels.0.relevance"),
        ([{"query_id": "q0", "document_id": "d1", "relevance": 1}] * 2, "qrels.1.document_id"),
    ):
        response = client.post("/v1/jobs", json={**job_body(queries=1, documents=2), "qrels": qrels})
        assert response.status_code == 422 and response.json()["field"] == field, response.text
    assert len(client.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]) == before


def test_qrels_uploads_name_the_bad_line_and_keep_what_was_stored(client: TestClient) -> None:
    job = client.post("/v1/jobs", json=job_body(queries=2, documents=4)).json()
    url = f"/v1/jobs/{job['id']}/qrels"
    stored = client.post(url, content=judgement_lines(("q0", "d1", 2), ("q1", "d3", 1)), headers=NDJSON)
    assert stored.status_code == 200 and stored.json() == {"job_id": job["id"], "judgements": 2, "queries": 2}

    for content, headers, line, field in (
        ("q0 0 d2 1\nq0 0 d3\n", TEXT, 2, "line"),
        ("q0 0 d2 1\nq0 0 d3 1\nq0 0 d2 3\n", TEXT, 3, "document_id"),
        ("q0 0 d2 1\nq7 0 d3 1\n", TEXT, 2, "query_id"),
        (judgement_lines(("q0", "d2", 1), ("q1", "d0", "high")), NDJSON, 2, "relevance"),
        ('{"query_id": "q0", "document_id": "d2", "relevance": 1}\n{nope', NDJSON, 2, None),
    ):
        refused = client.post(url, content=content, headers=headers)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"].startswith(f"line {line}:") and refused.json()["field"] in (
            field,
            "line",
        )
    assert client.post(url, content="", headers=TEXT).status_code == 422
    unchanged = client.post(url, content="q0 0 d1 2\n", headers=TEXT)  # judged again, as before
    assert unchanged.json()["judgements"] == 2

    assert wait_for(client, job["id"])["status"] == "completed"
    evaluation = client.get(f"/v1/jobs/{job['id']}/evaluation").json()
    assert [q["judged"] for q in evaluation["queries"]] == [1, 1]  # the refused lines left nothing


def test_a_job_file_carries_judgement_lines(client: TestClient) -> None:
    queries = [json.dumps(q) for q in job_body(queries=2, documents=3)["queries"]]
    judged = judgement_lines(("q1", "d2", 1), ("q0", "d0", 2), ("q0", "gone", 1))
    lines = [judged.split("\n")[0], queries[0], *judged.split("\n")[1:], queries[1]]  # before its query too
    job = client.post("/v1/jobs", content="\n".join(lines), headers=NDJSON)
    assert job.status_code == 202, job.text
    assert wait_for(client, job.json()["id"])["status"] == "completed"
    evaluation = client.get(f"/v1/jobs/{job.json()['id']}/evaluation").json()
    assert [(q["query_id"], q["judged"]) for q in evaluation["queries"]] == [("q0", 2), ("q1", 1)]

    before = len(client.get("/v1/jobs", params={"limit": 1000}).json()["jobs"])
    lines[2] = judgement_lines(("q5", "d0", 1))
    refused = client.post("/v1/jobs", content="\n".join(lines), headers=NDJSON)
    assert refused.status_code == 422 and refused.json()["error"].startswith("line 3:"), refused.text
    assert len(client.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]) == before


def test_evaluation_needs_judgements(client: TestClient) -> None:
    job = client.post("/v1/jobs", json=job_body(queries=1, documents=2)).json()
    wait_for(client, job["id"])
    response = client.get(f"/v1/jobs/{job['id']}/evaluation")
    assert response.status_code == 404 and response.json()["field"] == "qrels"
    assert client.get("/v1/jobs/nope/evaluation").status_code == 404


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_cli_uploads_qrels_and_prints_the_evaluation(
    api_server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, env = api_server
    key = bearer(env["RERANK_API_KEY"])
    with httpx.Client(base_url=url, timeout=30, headers=key) as client:
        job = client.post("/v1/jobs", json=job_body(queries=2, documents=5)).json()
    qrels = tmp_path / "judged.qrels"
    qrels.write_text("q0 0 d1 1\nq0 0 d4 2\nq1 0 d2 1\n")
    added = rerankq("qrels", job["id"], str(qrels), env=env)
    assert added.returncode == 0 and "3 judgements over 2 queries" in added.stdout, added.stderr
    with httpx.Client(base_url=url, timeout=30, headers=key) as client:
        wait_for(client, job["id"])
        evaluation = client.get(f"/v1/jobs/{job['id']}/evaluation", params={"k": 5}).json()
    printed = rerankq("eval", job["id"], "--k", "5", env=env)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert "nDCG@10" in lines[0] and "R@5" in lines[0]
    mean = next(line.split() for line in lines if line.startswith("mean"))
    assert mean[1] == "submitted" and float(mean[2]) == pytest.approx(
        evaluation["submitted"]["ndcg_at_10"], abs=1e-4
    )
    assert len(lines) == 1 + 2 * 3 + 1  # header, two orders of two queries and the mean, the note
