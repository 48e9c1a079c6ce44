"""Two tenants on one stack (real worker, Redis, both SQL dialects): neither can see, read, cancel,
delete or reference the other's jobs and collections, through any route (JSON, exports, pages);
the admin can. What a key may not see answers exactly as what does not exist. Keys come from the
`rerankq keys` command and are checked on every request."""

import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.integration.conftest import WorkerProcess, authed, bearer, make_app
from tests.integration.helpers import job_body, rerankq, wait_for

NDJSON = {"content-type": "application/x-ndjson"}
KB = "\n".join(json.dumps({"id": f"kb{i}", "text": f"secret policy {i} of team alpha"}) for i in range(3))


@dataclass
class Tenants:
    app: FastAPI
    alpha: TestClient
    beta: TestClient
    admin: TestClient
    job: str  # alpha's finished job
    collection: str  # alpha's collection
    collection_job: str  # alpha's finished job over its collection


@pytest.fixture
def tenants(db_url: str, worker: WorkerProcess) -> Iterator[Tenants]:
    app = make_app(db_url, worker.queue, worker.model)
    suffix = uuid4().hex[:6]
    with (
        authed(app, f"alpha-{suffix}", admin=False) as alpha,
        authed(app, f"beta-{suffix}", admin=False) as beta,
        authed(app, "ops", admin=True) as admin,
    ):
        job = alpha.post("/v1/jobs", json=job_body(queries=1, documents=3)).json()["id"]
        collection = alpha.post("/v1/collections", content=KB, headers=NDJSON).json()["id"]
        over = {"collection": collection, "queries": [{"id": "q", "text": "policy"}]}
        collection_job = alpha.post("/v1/jobs", json=over).json()["id"]
        for finished in (job, collection_job):
            assert wait_for(alpha, finished)["status"] == "completed"
        yield Tenants(app, alpha, beta, admin, job, collection, collection_job)


PAGES = [("GET", "/jobs/{job_id}"), ("GET", "/collections/{collection_id}")]  # not in the schema


def _routes_with(app: FastAPI, parameter: str) -> list[tuple[str, str]]:
    """(method, path) of every route of `app` that takes `parameter` in its path: each one the
    OpenAPI schema lists, and the page's."""
    listed = [
        (method.upper(), path) for path, methods in app.openapi()["paths"].items() for method in methods
    ]
    return [(method, path) for method, path in listed + PAGES if f"{{{parameter}}}" in path]


def _shape(text: str, object_id: str) -> str:
    """An answer with the object's id blanked, to compare with the answer for an id that never existed."""
    return re.sub(re.escape(object_id) + "|never-existed", "ID", text)


def test_every_route_answers_another_tenants_job_as_a_missing_one(tenants: Tenants) -> None:
    routes = _routes_with(tenants.app, "job_id")
    assert len(routes) >= 9  # status, cancel, delete, errors, results, 3 exports, the page
    for method, path in routes:
        foreign = tenants.beta.request(method, path.replace("{job_id}", tenants.job))
        missing = tenants.beta.request(method, path.replace("{job_id}", "never-existed"))
        assert foreign.status_code == 404, (method, path, foreign.text)
        assert _shape(foreign.text, tenants.job) == _shape(missing.text, "never-existed")
    own = tenants.alpha.get(f"/v1/jobs/{tenants.job}")
    assert own.status_code == 200 and own.json()["status"] == "completed"  # nothing was cancelled or deleted
    assert tenants.alpha.get(f"/v1/jobs/{tenants.job}/results").json()["results"]


def test_every_route_answers_another_tenants_collection_as_a_missing_one(tenants: Tenants) -> None:
    routes = _routes_with(tenants.app, "collection_id")
    assert len(routes) >= 4  # get, documents, delete, the page
    for method, path in routes:
        foreign = tenants.beta.request(method, path.replace("{collection_id}", tenants.collection))
        missing = tenants.beta.request(method, path.replace("{collection_id}", "never-existed"))
        assert foreign.status_code == 404, (method, path, foreign.text)
        assert _shape(foreign.text, tenants.collection) == _shape(missing.text, "never-existed")
    assert tenants.alpha.get(f"/v1/collections/{tenants.collection}").json()["documents"] == 3


def test_a_job_cannot_name_another_tenants_collection(tenants: Tenants) -> None:
    body = {"collection": tenants.collection, "queries": [{"id": "q", "text": "secret policy"}]}
    before = tenants.admin.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]
    refused = tenants.beta.post("/v1/jobs", json=body)
    assert refused.status_code == 404 and refused.json()["field"] == "collection"
    assert tenants.admin.get("/v1/jobs", params={"limit": 1000}).json()["jobs"] == before  # nothing stored


def test_lists_show_only_the_callers_own_and_the_admin_sees_all(tenants: Tenants) -> None:
    mine = tenants.beta.post("/v1/jobs", json=job_body(queries=1, documents=2)).json()["id"]
    beta_jobs = {job["id"] for job in tenants.beta.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]}
    alpha_jobs = {job["id"] for job in tenants.alpha.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]}
    assert beta_jobs == {mine}
    assert alpha_jobs == {tenants.job, tenants.collection_job}
    every = {job["id"] for job in tenants.admin.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]}
    assert alpha_jobs | beta_jobs <= every
    assert tenants.beta.get("/v1/collections").json()["collections"] == []
    listed = tenants.admin.get("/v1/collections", params={"limit": 1000}).json()["collections"]
    assert tenants.collection in {c["id"] for c in listed}
    for page in ("/jobs", "/collections", "/"):
        shown = tenants.beta.get(page).text
        assert tenants.job not in shown and tenants.collection not in shown, page
    assert tenants.job in tenants.alpha.get("/jobs").text
    wait_for(tenants.beta, mine)


def test_the_admin_reads_every_tenants_objects(tenants: Tenants) -> None:
    admin = tenants.admin
    assert admin.get(f"/v1/jobs/{tenants.job}").status_code == 200
    rows = admin.get(f"/v1/jobs/{tenants.collection_job}/results").json()["results"]
    assert {row["document_id"] for row in rows} == {"kb0", "kb1", "kb2"}
    assert admin.get(f"/v1/jobs/{tenants.job}/results.csv").status_code == 200
    assert admin.get(f"/jobs/{tenants.job}").status_code == 200
    assert admin.get(f"/v1/collections/{tenants.collection}/documents").json()["documents"]
    assert admin.get("/metrics").status_code == 200
    forbidden = tenants.alpha.get("/metrics")  # every tenant's numbers: admins only
    assert forbidden.status_code == 403 and set(forbidden.json()) == {"error", "field", "details"}


def test_the_sync_routes_job_belongs_to_the_caller(tenants: Tenants) -> None:
    answer = tenants.beta.post("/v2/rerank", json={"model": "m", "query": "q", "documents": ["a", "b"]})
    assert answer.status_code == 200, answer.text
    job_id = answer.json()["id"]
    assert tenants.beta.get(f"/v1/jobs/{job_id}").json()["synchronous"] is True
    assert tenants.alpha.get(f"/v1/jobs/{job_id}").status_code == 404


def test_requests_without_a_valid_key_are_401_in_the_documented_shape(
    db_url: str, worker: WorkerProcess
) -> None:
    app = make_app(db_url, worker.queue, worker.model)
    with TestClient(app) as anonymous, authed(app, "gamma", admin=False) as gamma:
        key = gamma.headers["authorization"].split(" ", 1)[1]
        assert anonymous.get("/healthz").status_code == 200  # open, for load balancers
        shapes = {
            ("GET", "/v1/jobs"): {"error", "field", "details"},
            ("POST", "/v1/jobs"): {"error", "field", "details"},
            ("POST", "/v2/rerank"): {"message", "field"},  # Cohere's own error shape on its route
            ("GET", "/metrics"): {"error", "field", "details"},
        }
        for (method, path), shape in shapes.items():
            refused = anonymous.request(method, path, json=job_body(queries=1, documents=1))
            assert refused.status_code == 401, (method, path)
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert set(refused.json()) == shape, (method, path)
        unknown = anonymous.get("/v1/jobs", headers=bearer("rq_not-a-key"))
        assert unknown.status_code == 401 and set(unknown.json()) == {"error", "field", "details"}
        assert "unknown or revoked" in unknown.json()["error"]
        assert anonymous.get("/v1/jobs", headers={"X-API-Key": key}).status_code == 200
        page = anonymous.get("/jobs")
        assert page.status_code == 401 and "API key needed" in page.text  # a page, with the key field
        anonymous.cookies.set("rerankq_key", key)
        assert anonymous.get("/jobs").status_code == 200  # the page's cookie, for reads
        written = anonymous.post("/v1/jobs", json=job_body(queries=1, documents=1))
        assert written.status_code == 401  # never for a write: a cross-site form cannot submit


def test_auth_off_trusts_every_request_and_says_so(
    db_url: str, worker: WorkerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="api.app"):
        app = make_app(db_url, worker.queue, worker.model, auth=False)
    assert any("RERANK_AUTH=off" in record.message for record in caplog.records)
    with TestClient(app) as client:
        job_id = client.post("/v1/jobs", json=job_body(queries=1, documents=2)).json()["id"]
        assert wait_for(client, job_id)["status"] == "completed"
        assert client.get("/metrics").status_code == 200


def test_keys_cli_creates_lists_and_revokes(db_url: str, worker: WorkerProcess, tmp_path: Path) -> None:
    env = {**os.environ, "RERANK_DATABASE_URL": db_url}
    tenant = f"cli-{uuid4().hex[:6]}"
    created = rerankq("keys", "create", "--tenant", tenant, env=env, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    *_, key = created.stdout.strip().splitlines()  # the key alone on the last line
    key_id = created.stdout.split()[1]
    app = make_app(db_url, worker.queue, worker.model)
    with TestClient(app, headers=bearer(key)) as client:
        assert client.get("/v1/jobs").status_code == 200
        listed = rerankq("keys", "list", env=env, cwd=tmp_path).stdout
        assert key_id in listed and tenant in listed and key not in listed  # never the key itself
        revoked = rerankq("keys", "revoke", key_id, env=env, cwd=tmp_path)
        assert revoked.returncode == 0 and "revoked" in revoked.stdout
        assert client.get("/v1/jobs").status_code == 401  # at once
    assert "revoked" in rerankq("keys", "list", env=env, cwd=tmp_path).stdout
    first_start = ("keys", "create", "--tenant", "admin", "--admin", "--if-none")  # compose's first-key
    assert rerankq(*first_start, env=env, cwd=tmp_path).returncode == 0  # made one unless one existed
    again = rerankq(*first_start, env=env, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout == "" and "exists already" in again.stderr
    missing = rerankq("keys", "revoke", "no-such-key", env=env, cwd=tmp_path)
    assert missing.returncode == 2 and "no key with id" in missing.stderr
