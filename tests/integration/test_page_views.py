"""The page's server side on both SQL dialects, without a browser: what each view reads through
the service (query texts, whole document texts) and how it answers a bad address."""

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.integration.helpers import job_body, submit, wait_for
from worker import service
from worker.views import QueryOut


def finished_job(client: TestClient) -> str:
    job_id = str(client.post("/v1/jobs", json=job_body(queries=2, documents=3)).json()["id"])
    assert wait_for(client, job_id)["status"] == "completed"
    return job_id


def test_the_page_reads_query_and_document_texts(client: TestClient, session: Session) -> None:
    job_id = finished_job(client)
    body = job_body(queries=2, documents=3)
    texts = [QueryOut(id=q["id"], text=q["text"]) for q in body["queries"]]
    assert service.job_queries(session, job_id, 10) == texts
    assert service.job_queries(session, job_id, 1) == texts[:1]
    assert service.job_queries(session, job_id, 1, "q1") == texts[1:]
    documents = {d["id"]: d["text"] for d in body["queries"][1]["documents"]}
    assert service.document_texts(session, job_id, "q1", ["d0", "d2"]) == {
        "d0": documents["d0"],
        "d2": documents["d2"],
    }


def test_results_page_renders_the_picked_query(client: TestClient) -> None:
    job_id = finished_job(client)
    page = client.get(f"/jobs/{job_id}", params={"query_id": "q1", "view": "table"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.count('<tr class="result"') == 3
    assert 'value="q1" selected' in page.text
    assert client.get("/jobs").text.count(f'href="/jobs/{job_id}"') == 1


def test_bad_addresses_answer_with_a_page(client: TestClient, session: Session) -> None:
    missing = client.get("/jobs/no-such-job")
    assert missing.status_code == 404 and "no-such-job" in missing.text
    assert missing.headers["content-type"].startswith("text/html")
    job_id = finished_job(client)
    assert client.get(f"/jobs/{job_id}", params={"query_id": "q9"}).status_code == 404
    assert client.get(f"/jobs/{job_id}", params={"cursor": "not-one"}).status_code == 422
    assert client.get("/collections/none").status_code == 404
    queued = client.get(f"/jobs/{submit(session)}")  # stored, never handed to a worker: progress only
    assert queued.status_code == 200 and 'id="results"' not in queued.text
