"""The HTTP API end to end: a real Celery worker process on real Redis, on SQLite and PostgreSQL."""

import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from tests.integration.conftest import NOBODY_LISTENS, WorkerProcess, bearer, free_port, make_app, make_client
from tests.integration.helpers import job_body, limits, submit, wait_for
from worker import pipeline, service
from worker.engine import Reranker
from worker.lifecycle import BatchStatus
from worker.models import Batch, Document, Job, Query, Result, utcnow

JOB_KEYS = (Result.job_id, Document.job_id, Batch.job_id, Query.job_id, Job.id)


def test_submit_poll_and_page_through_results(client: TestClient) -> None:
    accepted = client.post("/v1/jobs", json=job_body(queries=3, documents=6, top_k=4))
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()
    assert job["status"] == "queued" and job["progress"]["total"] == 18
    done = wait_for(client, job["id"])
    assert done["status"] == "completed", done
    assert done["progress"]["done"] == 18 and done["progress"]["failed"] == 0
    assert done["progress"]["pairs_per_second"] > 0

    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.get(
            f"/v1/jobs/{job['id']}/results", params={"limit": 5, **({"cursor": cursor} if cursor else {})}
        )
        assert page.status_code == 200, page.text
        rows += page.json()["results"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert [(r["query_id"], r["rank"]) for r in rows] == [(f"q{q}", r) for q in range(3) for r in range(1, 5)]
    assert all(0 < r["score"] < 1 and r["relevant"] == (r["score"] > 0.5) for r in rows)
    one = client.get(f"/v1/jobs/{job['id']}/results", params={"query_id": "q2"}).json()["results"]
    assert [r["document_id"] for r in one] == [r["document_id"] for r in rows if r["query_id"] == "q2"]

    listed = client.get("/v1/jobs", params={"status": "completed"}).json()["jobs"]
    assert job["id"] in [j["id"] for j in listed]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"queries": [{"id": "q", "text": "", "documents": [{"id": "d", "text": "x"}]}]}, "queries.0.text"),
        ({"queries": [{"id": "q", "text": "x", "documents": []}]}, "queries.0.documents"),
        (
            {
                "queries": [
                    {
                        "id": "q",
                        "text": "x",
                        "documents": [{"id": "d", "text": "a"}, {"id": "d", "text": "b"}],
                    }
                ]
            },
            "queries.0.documents",
        ),
        (
            {"queries": [{"id": "q", "text": "x", "documents": [{"id": 5, "text": "a"}]}]},
            "queries.0.documents.0.id",
        ),
        (
            {
                "queries": [{"id": "q", "text": "x", "documents": [{"id": "d", "text": "a"}]}],
                "options": {"k": 1},
            },
            "options.k",
        ),
        (
            {
                "queries": [{"id": "q", "text": "x", "documents": [{"id": "d", "text": "a"}]}],
                "options": {"threshold": 2},
            },
            "options.threshold",
        ),
        ({"queries": "all of them"}, "queries"),
        ([1, 2, 3], "body"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(client: TestClient, body: Any, field: str) -> None:
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"] == field
    assert field in error["error"]


def test_malformed_json_and_unknown_ids_are_4xx(client: TestClient) -> None:
    response = client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["field"]
    missing = client.get("/v1/jobs/does-not-exist")
    assert missing.status_code == 404 and missing.json()["field"] == "id"
    assert client.post("/v1/jobs/does-not-exist/cancel").status_code == 404
    assert client.get("/v1/jobs/does-not-exist/results").status_code == 404
    bad_status = client.get("/v1/jobs", params={"status": "exploded"})
    assert bad_status.status_code == 422 and bad_status.json()["field"] == "status"


def test_bad_requests_lose_nothing_accepted(client: TestClient) -> None:
    first = client.post("/v1/jobs", json=job_body(queries=1, documents=3)).json()
    assert client.post("/v1/jobs", json={"queries": []}).status_code == 422
    assert wait_for(client, first["id"])["status"] == "completed"
    bad_cursor = client.get(f"/v1/jobs/{first['id']}/results", params={"cursor": "garbage"})
    assert bad_cursor.status_code == 422 and bad_cursor.json()["field"] == "cursor"
    assert len(client.get(f"/v1/jobs/{first['id']}/results").json()["results"]) == 3


def test_a_long_poll_holds_the_answer_until_the_job_finishes(db_url: str, client: TestClient) -> None:
    with make_client(db_url, NOBODY_LISTENS, "tiny") as idle:  # its jobs stay queued
        job_id = idle.post("/v1/jobs", json=job_body(queries=1, documents=2)).json()["id"]
        started = time.monotonic()
        held = idle.get(f"/v1/jobs/{job_id}", params={"wait": 0.5})
        assert held.json()["status"] == "queued" and time.monotonic() - started >= 0.5  # answered as it is
        with ThreadPoolExecutor(1) as pool:
            poll = pool.submit(idle.get, f"/v1/jobs/{job_id}", params={"wait": 60})
            time.sleep(0.5)
            assert idle.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
            assert poll.result(timeout=30).json()["status"] == "cancelled"  # told, not timed out
        refused = idle.get(f"/v1/jobs/{job_id}", params={"wait": 61})
        assert refused.status_code == 422 and "wait" in refused.text
    no_broker = f"redis://127.0.0.1:{free_port()}/0"
    with make_client(db_url, NOBODY_LISTENS, "tiny", broker_url=no_broker) as cut_off:
        unfinished = cut_off.post("/v1/jobs", json=job_body(queries=1, documents=2))
        assert unfinished.status_code == 202, unfinished.text  # stored; the reconciler enqueues it
        started = time.monotonic()
        answered = cut_off.get(f"/v1/jobs/{unfinished.json()['id']}", params={"wait": 60})
        assert answered.status_code == 200 and time.monotonic() - started < 30  # at once, not held
        cut_off.post(f"/v1/jobs/{unfinished.json()['id']}/cancel")  # no job of this test is left queued
    job_id = client.post("/v1/jobs", json=job_body(queries=2, documents=5)).json()["id"]
    assert client.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()["status"] == "completed"


def test_cancel(client: TestClient, session: Session) -> None:
    job = client.post("/v1/jobs", json=job_body(queries=4, documents=40)).json()
    cancelled = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and again.json()["field"] == "status"
    # The batch a worker held when the cancel came is skipped, not scored: nothing moves after it.
    held = select(func.count()).where(Batch.job_id == job["id"], Batch.status == BatchStatus.running)
    deadline = time.monotonic() + 60
    while session.scalar(held) and time.monotonic() < deadline:
        session.rollback()
        time.sleep(0.1)
    final = client.get(f"/v1/jobs/{job['id']}").json()
    progress = final["progress"]
    assert final["status"] == "cancelled" and progress["done"] == cancelled.json()["progress"]["done"]
    assert progress["done"] + progress["failed"] + progress["cancelled"] == progress["total"] == 160
    assert progress["failed"] == 0 and progress["cancelled"] > 0
    results = client.get(f"/v1/jobs/{job['id']}/results", params={"limit": 1000}).json()["results"]
    assert len(results) == progress["done"]  # every scored pair is ranked, nothing after the cancel


def test_healthz_and_workers(client: TestClient, worker: WorkerProcess) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    health = response.json()
    assert (health["status"], health["database"], health["broker"]) == ("ok", "ok", "ok")
    mine = [w for w in health["workers"] if w["queue"].startswith(worker.queue + ".")]
    assert mine and mine[0]["device"] == "cpu" and mine[0]["dtype"] == "float32"
    listed = client.get("/v1/workers").json()["workers"]
    assert {w["name"] for w in mine} <= {w["name"] for w in listed if w["live"]}


DATABASE_DOWN = "postgresql+psycopg://postgres@127.0.0.1:9/down"  # nothing listens on port 9


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/jobs/abc"),
        ("POST", "/v1/jobs/abc/cancel"),
        ("GET", "/v1/jobs/abc/results"),
        ("GET", "/v1/jobs/abc/results.jsonl"),
        ("GET", "/v1/jobs/abc/results.csv"),
        ("GET", "/v1/collections/abc"),
        ("DELETE", "/v1/collections/abc"),
        ("GET", "/v1/workers"),
    ],
)
def test_unreachable_database_is_a_json_503_with_retry_after(method: str, path: str) -> None:
    # no key can be made in a database that is down; the outage is found before any key is read
    with TestClient(make_app(DATABASE_DOWN, "unused", "tiny"), headers=bearer("rq_unchecked")) as down:
        response = down.request(method, path, json=job_body(queries=1, documents=1))
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    body = response.json()
    assert set(body) == {"error", "field", "details"} and "database is unreachable" in body["error"]


HTML = (
    "<html><body><!-- nginx config example --><p>Drop rows&nbsp;with NaN:</p>"
    "<pre><code>df.dropna(subset=[&quot;price&quot;])</code></pre></body></html>"
)


def test_html_is_cleaned_before_scoring(client: TestClient, reranker: Reranker) -> None:
    query = "drop missing values in pandas"
    texts = {"html": HTML, "plain": "Drop rows with NaN: df.dropna()"}
    scores = {}
    for clean_html in (True, False):
        body = {
            "queries": [
                {"id": "q", "text": query, "documents": [{"id": k, "text": v} for k, v in texts.items()]}
            ],
            "options": {"clean_html": clean_html},
        }
        job = client.post("/v1/jobs", json=body).json()
        assert wait_for(client, job["id"])["status"] == "completed"
        rows = client.get(f"/v1/jobs/{job['id']}/results").json()["results"]
        scores[clean_html] = {r["document_id"]: r for r in rows}
    cleaned = 'Drop rows with NaN: df.dropna(subset=["price"])'
    expected_clean, expected_raw = reranker.score([(query, cleaned), (query, HTML)], max_length=1024)
    assert abs(scores[True]["html"]["raw_score"] - expected_clean) < 1e-5  # the comment never reached it
    assert abs(scores[False]["html"]["raw_score"] - expected_raw) < 1e-5
    best = scores[True]["html"]["best_chunk"]
    assert best["text"] == HTML[best["start"] : best["end"]]  # spans point into the client's text
    assert best["text"].startswith("Drop rows&nbsp;with NaN") and "nginx" not in best["text"]


def test_include_chunks_lists_every_window(client: TestClient) -> None:
    long_text = " ".join(f"sentence {i} about dataframes, indexes and missing values." for i in range(100))
    body = job_body(queries=1, documents=2, max_length=128, chunking={"max_tokens": 64, "overlap": 8})
    body["queries"][0]["documents"][1]["text"] = long_text
    job = client.post("/v1/jobs", json=body).json()
    assert wait_for(client, job["id"])["status"] == "completed"
    url = f"/v1/jobs/{job['id']}/results"
    plain = client.get(url).json()["results"]
    assert all("chunk_scores" not in r for r in plain)
    rows = {r["document_id"]: r for r in client.get(url, params={"include_chunks": "true"}).json()["results"]}
    windows = rows["d1"]["chunk_scores"]
    assert rows["d1"]["chunks"] == len(windows) > 10
    assert rows["d1"]["raw_score"] == max(w["raw_score"] for w in windows)
    assert windows[0]["start"] == 0 and windows[-1]["end"] == len(long_text)
    assert all(a["start"] < b["start"] < a["end"] for a, b in itertools.pairwise(windows))  # they overlap
    assert rows["d0"]["chunks"] == 1 == len(rows["d0"]["chunk_scores"])


def test_oversized_input_is_refused_and_loses_nothing(client: TestClient, db_url: str, worker: Any) -> None:
    before = client.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]
    body = job_body(queries=1, documents=2)
    body["queries"][0]["documents"][1]["text"] = "x" * 10_000_000
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422
    assert response.json()["field"] == "queries.0.documents.1.text"
    assert "RERANK_MAX_DOCUMENT_CHARS" in response.json()["error"]
    with make_client(db_url, worker.queue, "tiny", max_request_bytes=1_000_000) as small:
        response = small.post("/v1/jobs", json=body)
    assert response.status_code == 413 and response.json()["field"] == "body"
    assert client.get("/v1/jobs", params={"limit": 1000}).json()["jobs"] == before


def test_delete_a_finished_job_and_its_results(client: TestClient, session: Session) -> None:
    job = client.post("/v1/jobs", json=job_body(queries=1, documents=3)).json()
    first = client.delete(f"/v1/jobs/{job['id']}").status_code
    assert first in (204, 409)  # 409 while it runs; a job of 3 pairs may be done already
    if first == 409:
        assert wait_for(client, job["id"])["status"] == "completed"
        assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 404
    left = [session.scalar(select(func.count()).where(key == job["id"])) for key in JOB_KEYS]
    assert left == [0] * len(JOB_KEYS)


def test_finished_jobs_expire_after_the_retention(
    db_url: str, worker: WorkerProcess, session: Session
) -> None:
    kept = submit(session)
    expired = submit(session)
    for job_id in (kept, expired):
        service.cancel_job(session, job_id)
    old = utcnow() - timedelta(days=3)
    session.execute(update(Job).where(Job.id == expired).values(finished_at=old))
    session.commit()
    with make_client(db_url, worker.queue, "tiny", retention_days=2) as client:  # purges when it starts
        deadline = time.monotonic() + 30
        while client.get(f"/v1/jobs/{expired}").status_code != 404 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get(f"/v1/jobs/{expired}").status_code == 404
        assert client.get(f"/v1/jobs/{kept}").json()["status"] == "cancelled"


def test_a_failed_batch_is_listed_with_its_error(
    client: TestClient, session: Session, reranker: Reranker
) -> None:
    job_id = submit(session, queries=1, documents=2)
    (batch,) = pipeline.plan_job(session, job_id, limits(10)).batches
    pipeline.score_batch(session, batch, reranker, limits(max_attempts=0))  # given up at once
    pipeline.finalize_job(session, job_id)
    errors = client.get(f"/v1/jobs/{job_id}/errors").json()["errors"]
    assert errors == [{"batch": 0, "pairs": 2, "attempts": 1, "error": "gave up after 0 attempts"}]
    assert (
        client.get(f"/v1/jobs/{job_id}").json()["error"]
        == f"every batch failed; the first: {errors[0]['error']}"
    )
    assert client.get("/v1/jobs/nope/errors").status_code == 404


def test_a_plan_that_failed_midway_does_not_trip_the_next(session: Session) -> None:
    """SQLite runs DDL outside the transaction: a plan that failed after creating its temporary table
    (a "database is locked" midway, retried) left the table on the pooled connection, and every later
    plan on that connection failed on "already exists" (a worker's jobs stayed queued for good)."""
    job_id = submit(session, queries=1, documents=2)
    session.execute(text("CREATE TEMPORARY TABLE planned_pairs (document_id INTEGER, number INTEGER)"))
    assert len(pipeline.plan_job(session, job_id, limits(1)).batches) == 2


def test_with_the_broker_down_a_job_is_accepted_queued_and_can_be_cancelled(db_url: str) -> None:
    """The database is the source of truth: the job waits, queued, for the reconciler to send it
    once Redis is back; a cancel meanwhile is answered too (its webhook is the reconciler's then)."""
    with make_client(db_url, "unused", "tiny", broker_url="redis://127.0.0.1:9/0") as down:
        response = down.post(
            "/v1/jobs", json=job_body(queries=1, documents=3, callback_url="http://x.test/h")
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        assert down.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
        cancelled = down.post(f"/v1/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
