"""Collections and streamed uploads through the HTTP API with a real worker, on SQLite and
PostgreSQL: per-line errors keep the good lines, jobs reference documents stored once, a JSONL job
streams in, and nothing half-uploaded is kept."""

import json
from pathlib import Path
from typing import Any
from uuid import uuid4

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from tests.integration.conftest import REDIS_URL, authed
from tests.integration.helpers import TINY, limits, wait_for
from worker import pipeline, service
from worker.engine import Reranker
from worker.models import Collection, CollectionDocument, Document
from worker.spec import CollectionJobSpec

NDJSON = {"content-type": "application/x-ndjson"}
EXAMPLES = Path(__file__).parents[2] / "examples"


def document_lines(count: int) -> list[str]:
    return [
        json.dumps(
            {
                "id": f"kb-{i}",
                "text": f"article {i} on dropping rows with missing values",
                "metadata": {"i": i},
            }
        )
        for i in range(count)
    ]


def upload(client: TestClient, lines: list[str], **params: str) -> dict[str, Any]:
    response = client.post(
        "/v1/collections", content="\n".join(lines).encode(), headers=NDJSON, params=params
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_upload_reports_bad_lines_and_keeps_the_good_ones(client: TestClient) -> None:
    lines = document_lines(1500)  # more than one block of lines, so duplicates span blocks
    lines[9] = "{not json"
    lines[99] = json.dumps({"id": "x", "text": 5})
    lines[1299] = json.dumps({"id": "kb-4", "text": "a second kb-4"})
    lines[1300] = ""
    body = upload(client, lines, name="faq")
    assert body["name"] == "faq" and body["documents"] == 1496 and body["error_count"] == 3
    assert [(e["line"], e["field"]) for e in body["errors"]] == [(10, None), (100, "text"), (1300, None)]
    assert "duplicate id 'kb-4'" in body["errors"][2]["error"]
    assert client.get(f"/v1/collections/{body['id']}").json() == body

    multipart = client.post(
        "/v1/collections", files={"file": ("kb.jsonl", "\n".join(document_lines(3)).encode())}
    )
    assert multipart.status_code == 201 and multipart.json()["documents"] == 3


def test_jobs_over_a_collection_store_each_text_once(client: TestClient, db_url: str) -> None:
    kb = upload(client, document_lines(30))
    job = {
        "collection": kb["id"],
        "queries": [
            {"id": "all", "text": "how do I drop rows with NaN?"},
            {"id": "some", "text": "missing values", "document_ids": ["kb-3", "kb-7", "kb-11"]},
        ],
        "options": {"top_k": 5},
    }
    accepted = client.post("/v1/jobs", json=job)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["progress"]["total"] == 33 and accepted.json()["collection"] == kb["id"]
    done = wait_for(client, accepted.json()["id"])
    assert done["status"] == "completed" and done["progress"]["done"] == 33
    rows = client.get(f"/v1/jobs/{done['id']}/results", params={"limit": 100}).json()["results"]
    assert [(r["query_id"], r["rank"]) for r in rows] == [("all", r) for r in range(1, 6)] + [
        ("some", r) for r in range(1, 4)
    ]
    assert {r["document_id"] for r in rows if r["query_id"] == "some"} == {"kb-3", "kb-7", "kb-11"}
    assert all(r["best_chunk"]["text"].startswith("article ") for r in rows)

    engine = create_engine(db_url)
    with engine.connect() as db:
        texts = db.scalar(select(func.count()).where(CollectionDocument.collection_id == kb["id"]))
        pairs = db.scalar(select(func.count()).where(Document.job_id == done["id"], Document.text.is_(None)))
    engine.dispose()
    assert (texts, pairs) == (30, 33)  # 30 texts stored once, 33 pairs pointing at them

    assert client.delete(f"/v1/collections/{kb['id']}").status_code == 409  # a job refers to it
    unused = upload(client, document_lines(2))
    assert client.delete(f"/v1/collections/{unused['id']}").status_code == 204
    assert client.get(f"/v1/collections/{unused['id']}").status_code == 404


def test_collection_job_errors_name_the_field(client: TestClient) -> None:
    kb = upload(client, document_lines(3))
    missing = client.post("/v1/jobs", json={"collection": "nope", "queries": [{"id": "q", "text": "x"}]})
    assert missing.status_code == 404 and missing.json()["field"] == "collection"
    unknown = client.post(
        "/v1/jobs",
        json={
            "collection": kb["id"],
            "queries": [{"id": "q", "text": "x", "document_ids": ["kb-1", "kb-9"]}],
        },
    )
    assert unknown.status_code == 422 and unknown.json()["field"] == "queries.0.document_ids"
    assert "'kb-9'" in unknown.json()["error"]
    mixed = client.post(
        "/v1/jobs", json={"collection": kb["id"], "queries": [{"id": "q", "text": "x", "documents": []}]}
    )
    assert mixed.status_code == 422 and mixed.json()["field"] == "queries.0.documents"


def test_a_jsonl_job_streams_in_and_a_bad_line_keeps_nothing(client: TestClient) -> None:
    body = (EXAMPLES / "pandas_en.jsonl").read_bytes()
    expected = sum(len(json.loads(line)["documents"]) for line in body.splitlines() if line.strip())
    options = json.dumps({"top_k": 3, "chunking": {"enabled": False}})
    accepted = client.post(
        "/v1/jobs", content=body, headers=NDJSON, params={"options": options, "priority": "high"}
    )
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()
    assert job["priority"] == "high" and job["options"]["top_k"] == 3 and job["progress"]["total"] == expected
    assert wait_for(client, job["id"])["status"] == "completed"

    before = client.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]
    bad = body + b'{"id": "q9", "text": "x", "documents": [{"id": "d", "text": 7}]}\n'
    refused = client.post("/v1/jobs", content=bad, headers=NDJSON)
    assert refused.status_code == 422
    assert refused.json()["field"] == "documents.0.text" and refused.json()["error"].startswith("line 3:")
    duplicate = client.post("/v1/jobs", content=body + body, headers=NDJSON)
    assert duplicate.status_code == 422 and "duplicate query id" in duplicate.json()["error"]
    wrong_option = client.post("/v1/jobs", content=body, headers=NDJSON, params={"options": '{"top_k": 0}'})
    assert wrong_option.status_code == 422 and wrong_option.json()["field"] == "options.top_k"
    assert client.get("/v1/jobs", params={"limit": 1000}).json()["jobs"] == before


def test_the_document_limit_is_the_apps_own(db_url: str, worker: Any) -> None:
    """An app built with a small RERANK_MAX_DOCUMENT_CHARS applies it to every upload: a collection
    line over it is reported and skipped, a JSONL job with one is refused naming the line."""
    from api.app import create_app
    from worker.config import Settings

    settings = Settings(database_url=db_url, broker_url=REDIS_URL, queue=worker.queue, max_document_chars=60)
    with authed(create_app(settings)) as small:
        lines = document_lines(3)
        lines[1] = json.dumps({"id": "long", "text": "x" * 61})
        body = upload(small, lines)
        assert body["documents"] == 2 and [(e["line"], e["field"]) for e in body["errors"]] == [(2, "text")]
        assert "61 characters; the limit is 60" in body["errors"][0]["error"]
        query = {"id": "q", "text": "rows with NaN", "documents": [{"id": "d", "text": "y" * 61}]}
        refused = small.post("/v1/jobs", content=json.dumps(query).encode(), headers=NDJSON)
        assert refused.status_code == 422 and refused.json()["field"] == "documents.0.text"
        assert refused.json()["error"].startswith("line 1: documents.0.text: document has 61 characters")


def test_an_upload_whose_every_line_is_rejected_is_422_and_keeps_nothing(client: TestClient) -> None:
    before = client.get("/v1/collections").json()["collections"]
    refused = client.post("/v1/collections", content=b'{"id": "a"}\n{not json\n', headers=NDJSON)
    assert refused.status_code == 422 and refused.json()["field"] == "text"
    assert (
        refused.json()["error"]
        == "no document was accepted (2 line(s) rejected; line 1: text: Field required)"
    )
    assert client.post("/v1/collections", content=b"", headers=NDJSON).status_code == 422
    assert client.get("/v1/collections").json()["collections"] == before


def test_a_job_over_an_empty_collection_completes_at_once(session: Session, reranker: Reranker) -> None:
    empty = Collection(id=uuid4().hex, name="empty", documents=0, error_count=0, errors=[])
    session.add(empty)
    session.commit()
    spec = CollectionJobSpec.model_validate({"collection": empty.id, "queries": [{"id": "q", "text": "x"}]})
    job_id = service.submit_job(session, spec, TINY).id
    planned = pipeline.plan_job(session, job_id, limits())
    assert (planned.batches, planned.finalize) == ([], job_id)  # nothing to score: finalize now
    assert pipeline.finalize_job(session, job_id) is True
    job = service.job_status(session, job_id)
    assert (job.status, job.progress.total) == ("completed", 0)
    assert service.results_page(session, job_id).results == []


def test_collections_are_listed_and_their_documents_paged(client: TestClient) -> None:
    kb = upload(client, document_lines(25), name="paged")
    listed = client.get("/v1/collections", params={"limit": 1000}).json()["collections"]
    assert kb in listed
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/v1/collections/{kb['id']}/documents", params=params).json()
        seen += page["documents"]
        if (cursor := page["next_cursor"]) is None:
            break
    expected = sorted((json.loads(line) for line in document_lines(25)), key=lambda d: d["id"])
    assert seen == expected
    assert client.get("/v1/collections/nope/documents").status_code == 404
