"""Exports of a finished job's results (.jsonl and .csv streamed, .parquet, `rerankq results -o x.parquet`)
through the HTTP API with a real worker, on SQLite and PostgreSQL; the store read a page at a time."""

import csv
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tests.integration.helpers import iter_pages, job_body, results, submit, wait_for
from worker import cli, ranking, service, store
from worker.export import RESULT_COLUMNS, flat
from worker.lifecycle import JobStatus
from worker.models import Document, Result
from worker.views import RankedRow


def finished_job(client: TestClient, **options: Any) -> str:
    job = client.post("/v1/jobs", json=job_body(queries=3, documents=9, **options)).json()
    assert wait_for(client, job["id"])["status"] == "completed"
    return str(job["id"])


def paged(client: TestClient, job_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every row of the paged results API, small pages, so the cursor is followed."""

    def fetch(cursor: str | None) -> dict[str, Any]:
        page = {"limit": 4, **params, **({"cursor": cursor} if cursor else {})}
        body: dict[str, Any] = client.get(f"/v1/jobs/{job_id}/results", params=page).json()
        return body

    return list(iter_pages(fetch))


def exported(client: TestClient, job_id: str, kind: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get(f"/v1/jobs/{job_id}/results.{kind}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == f'attachment; filename="{job_id}.{kind}"'
    if kind == "parquet":
        assert response.headers["content-type"] == "application/vnd.apache.parquet"
        return list(pq.read_table(io.BytesIO(response.content)).to_pylist())
    if kind == "csv":
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        return list(csv.DictReader(io.StringIO(response.text)))
    assert response.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines()]


def as_csv(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [
        {c: "" if v is None else str(v) for c, v in zip(RESULT_COLUMNS, flat(row), strict=True)}
        for row in rows
    ]


def as_parquet(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(zip(RESULT_COLUMNS, flat(row), strict=True)) for row in rows]


def test_exports_stream_every_row_as_the_paged_api_has_them(client: TestClient) -> None:
    job_id = finished_job(client)
    rows = paged(client, job_id)
    assert [(r["query_id"], r["rank"]) for r in rows] == [
        (f"q{q}", k) for q in range(3) for k in range(1, 10)
    ]
    assert exported(client, job_id, "jsonl") == rows
    assert exported(client, job_id, "csv") == as_csv(rows)
    submitted = {(q["id"], d["id"]): d["metadata"] for q in job_body(3, 9)["queries"] for d in q["documents"]}
    assert all(row["metadata"] == submitted[row["query_id"], row["document_id"]] for row in rows)
    assert exported(client, job_id, "parquet") == as_parquet(rows)


def test_exports_keep_top_k_and_filter_by_query(client: TestClient) -> None:
    job_id = finished_job(client, top_k=2)
    rows = paged(client, job_id)
    assert [(r["query_id"], r["rank"]) for r in rows] == [(f"q{q}", k) for q in range(3) for k in (1, 2)]
    assert exported(client, job_id, "csv") == as_csv(rows)
    one = paged(client, job_id, query_id="q1")
    assert [r["query_id"] for r in one] == ["q1", "q1"]
    assert exported(client, job_id, "jsonl", query_id="q1") == one
    assert exported(client, job_id, "csv", query_id="q1") == as_csv(one)
    assert exported(client, job_id, "parquet", query_id="q1") == as_parquet(one)


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_export_errors_are_answered_before_any_row(client: TestClient, session: Session, kind: str) -> None:
    missing = client.get(f"/v1/jobs/no-such-job/results.{kind}")
    assert missing.status_code == 404 and missing.json()["field"] == "id"
    queued = submit(session)  # stored, never handed to a worker
    unfinished = client.get(f"/v1/jobs/{queued}/results.{kind}")
    assert unfinished.status_code == 409 and unfinished.json()["field"] == "status"
    job_id = finished_job(client)
    no_query = client.get(f"/v1/jobs/{job_id}/results.{kind}", params={"query_id": "q9"})
    assert no_query.status_code == 404 and no_query.json()["field"] == "query_id"


def test_cli_results_writes_parquet_from_the_stream(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = finished_job(client, top_k=4)
    monkeypatch.setattr(httpx, "stream", client.stream)  # the CLI's HTTP goes to the test API
    out = tmp_path / "out.parquet"
    done = CliRunner().invoke(cli.app, ["results", job_id, "-o", str(out), "--api-url", "http://testserver"])
    assert done.exit_code == 0, done.output
    expected = [dict(zip(RESULT_COLUMNS, flat(row), strict=True)) for row in paged(client, job_id)]
    assert pq.read_table(out).to_pylist() == expected and len(expected) == 12
    assert {json.loads(row["metadata"])["n"] for row in expected} <= set(range(9))  # the documents' own
    missing = CliRunner().invoke(
        cli.app,
        ["results", "no-such-job", "-o", str(tmp_path / "x.parquet"), "--api-url", "http://testserver"],
    )
    assert missing.exit_code == 1 and "error 404" in missing.output
    assert not (tmp_path / "x.parquet").exists()


def scored_without_a_model(session: Session, queries: int, documents: int) -> str:
    """A completed job whose every pair has a result (raw score -position: rank = position + 1)."""
    job_id = submit(session, queries=queries, documents=documents)
    pairs = session.execute(
        select(Document.id, Document.query_id, Document.position).where(Document.job_id == job_id)
    )
    session.execute(
        insert(Result),
        [{"job_id": job_id, "document_id": d, "query_id": q, "raw_score": -float(p)} for d, q, p in pairs],
    )
    ranking.rank_results(session, store.get_job(session, job_id))
    assert store.transition(session, job_id, JobStatus.running)
    assert store.transition(session, job_id, JobStatus.completed)
    session.commit()
    return job_id


def test_export_reads_the_store_a_page_at_a_time(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = scored_without_a_model(session, queries=3, documents=1000)
    expected = results(session, job_id)
    limits: list[int] = []
    read = store.results_page

    def counted(*args: Any) -> list[RankedRow]:
        limits.append(args[-1])
        return read(*args)

    monkeypatch.setattr(store, "results_page", counted)
    pages = service.export_pages(session, job_id, page_size=500)
    assert limits == []  # checked, nothing read yet
    first = next(pages)
    assert len(first) == 500 and limits == [500]  # one page in memory, not the job
    rows = [row.model_dump(exclude_unset=True) for row in first + [row for page in pages for row in page]]
    assert limits == [500] * 7  # 6 full pages, then the empty one that ends it
    assert rows == expected and len(rows) == 3000
    assert [(r["query_id"], r["rank"]) for r in rows[998:1002]] == [
        ("q0", 999),
        ("q0", 1000),
        ("q1", 1),
        ("q1", 2),
    ]
