"""Per-tenant quotas and Idempotency-Key on real Redis and both SQL dialects: a tenant past its
queued pairs or its request rate gets 429 with Retry-After while another tenant goes on; a retried
submit or upload gets the first object back, a reused key with another body is a 422, and keys
expire."""

import json
import time
from uuid import uuid4

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.integration.conftest import NOBODY_LISTENS, authed, make_app
from tests.integration.helpers import job_body
from worker import service
from worker.models import IdempotencyKey

NDJSON = {"content-type": "application/x-ndjson"}


def tenant() -> str:
    return f"t-{uuid4().hex[:8]}"


def job_ids(client: TestClient) -> set[str]:
    return {job["id"] for job in client.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]}


def test_queued_pairs_over_the_quota_are_429_and_store_nothing(db_url: str) -> None:
    app = make_app(db_url, NOBODY_LISTENS, "tiny", tenant_max_queued_pairs=15)
    with authed(app, tenant(), admin=False) as first, authed(app, tenant(), admin=False) as other:
        assert first.post("/v1/jobs", json=job_body(queries=2, documents=5)).status_code == 202  # 10 pairs
        before = job_ids(first)
        refused = first.post("/v1/jobs", json=job_body(queries=2, documents=5))  # 20 > 15
        assert refused.status_code == 429
        assert refused.headers["retry-after"].isdigit()
        assert set(refused.json()) == {"error", "field", "details"}
        assert "RERANK_TENANT_MAX_QUEUED_PAIRS" in refused.json()["error"]
        as_file = "\n".join(json.dumps(q) for q in job_body(queries=2, documents=5)["queries"])
        assert first.post("/v1/jobs", content=as_file, headers=NDJSON).status_code == 429  # streamed too
        assert job_ids(first) == before  # nothing of the refused jobs was kept
        assert other.post("/v1/jobs", json=job_body(queries=2, documents=5)).status_code == 202
        cancelled = first.post(f"/v1/jobs/{next(iter(before))}/cancel")
        assert cancelled.status_code == 200  # its pairs no longer count
        assert first.post("/v1/jobs", json=job_body(queries=2, documents=5)).status_code == 202


def test_requests_over_the_rate_are_429_with_retry_after(db_url: str) -> None:
    app = make_app(db_url, NOBODY_LISTENS, "tiny", tenant_requests_per_minute=5)
    with authed(app, tenant(), admin=False) as busy, authed(app, tenant(), admin=False) as quiet:
        # a clock minute can turn during the burst; twelve requests pass the limit in either minute
        answers = [busy.get("/v1/jobs") for _ in range(12)]
        limited = [answer for answer in answers if answer.status_code == 429]
        assert limited and all(answer.status_code in (200, 429) for answer in answers)
        assert 1 <= int(limited[0].headers["retry-after"]) <= 61
        assert "RERANK_TENANT_REQUESTS_PER_MINUTE" in limited[0].json()["error"]
        assert quiet.get("/v1/jobs").status_code == 200  # another tenant is not held back
        assert busy.get("/healthz").status_code == 200  # open routes are not counted


def test_a_retried_submit_gets_the_first_job_back(db_url: str) -> None:
    app = make_app(db_url, NOBODY_LISTENS, "tiny")
    key = {"Idempotency-Key": uuid4().hex}
    with authed(app, tenant(), admin=False) as client, authed(app, tenant(), admin=False) as other:
        first = client.post("/v1/jobs", json=job_body(queries=2, documents=3), headers=key)
        assert first.status_code == 202
        again = client.post("/v1/jobs", json=job_body(queries=2, documents=3), headers=key)
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
        body = job_body(queries=2, documents=3)
        as_file = "\n".join(json.dumps(q) for q in body["queries"])
        options = {"options": json.dumps(body["options"])}
        streamed = client.post("/v1/jobs", content=as_file, headers={**NDJSON, **key}, params=options)
        assert streamed.status_code == 200 and streamed.json()["id"] == first.json()["id"]  # the same job
        assert job_ids(client) == {first.json()["id"]}
        changed = client.post("/v1/jobs", json=job_body(queries=2, documents=4), headers=key)
        assert changed.status_code == 422 and changed.json()["field"] == "Idempotency-Key"
        assert "different request body" in changed.json()["error"]
        assert job_ids(client) == {first.json()["id"]}
        theirs = other.post("/v1/jobs", json=job_body(queries=2, documents=3), headers=key)
        assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]  # keys are per tenant


def test_a_retried_upload_gets_the_first_collection_back(db_url: str) -> None:
    app = make_app(db_url, NOBODY_LISTENS, "tiny")
    key = {"Idempotency-Key": uuid4().hex, **NDJSON}
    lines = "\n".join(json.dumps({"id": f"d{i}", "text": f"text {i}"}) for i in range(5))
    with authed(app, tenant(), admin=False) as client:
        first = client.post("/v1/collections", content=lines, headers=key, params={"name": "kb"})
        assert first.status_code == 201
        again = client.post("/v1/collections", content=lines, headers=key, params={"name": "kb"})
        assert again.status_code == 200 and again.json() == first.json()
        assert [c["id"] for c in client.get("/v1/collections").json()["collections"]] == [first.json()["id"]]
        changed = client.post("/v1/collections", content=lines + "\n", headers=key, params={"name": "other"})
        assert changed.status_code == 422 and changed.json()["field"] == "Idempotency-Key"


def test_idempotency_keys_expire(db_url: str, session: Session) -> None:
    app = make_app(db_url, NOBODY_LISTENS, "tiny", idempotency_hours=0.5 / 3600)
    key = {"Idempotency-Key": uuid4().hex}
    with authed(app, tenant(), admin=False) as client:
        first = client.post("/v1/jobs", json=job_body(queries=1, documents=2), headers=key).json()["id"]
        time.sleep(1)
        later = client.post("/v1/jobs", json=job_body(queries=1, documents=2), headers=key)
        assert later.status_code == 202 and later.json()["id"] != first  # forgotten: a new job
    time.sleep(1)
    assert service.purge_idempotency_keys(session, 0.5 / 3600) >= 1  # the API's hourly purge
    assert session.query(IdempotencyKey).filter_by(key=key["Idempotency-Key"]).count() == 0
