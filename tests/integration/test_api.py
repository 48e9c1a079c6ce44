"""The HTTP API end to end: a real Celery worker process on real Redis, on SQLite and PostgreSQL."""

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integration.helpers import job_body, wait_for


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


def test_cancel(client: TestClient) -> None:
    job = client.post("/v1/jobs", json=job_body(queries=4, documents=40)).json()
    cancelled = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and again.json()["field"] == "status"
    time.sleep(2)  # a batch that was running when the cancel came has finished by now
    final = client.get(f"/v1/jobs/{job['id']}").json()
    assert final["status"] == "cancelled" and final["progress"]["done"] < 160
    results = client.get(f"/v1/jobs/{job['id']}/results", params={"limit": 1000}).json()["results"]
    assert len(results) == final["progress"]["done"]  # every scored pair is ranked, nothing after the cancel


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}
