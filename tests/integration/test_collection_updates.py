"""Collections that change, through the HTTP API with a real worker on SQLite and PostgreSQL:
updates and deletions move the version, bad lines are reported without losing what is stored, a
job reads the version it was planned against, and a job run again reuses the score cache."""

import json
from pathlib import Path
from typing import Any
from uuid import uuid4

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.integration.helpers import TINY, limits, rerankq, wait_for
from worker import pipeline, service
from worker.config import Settings
from worker.engine import Reranker
from worker.models import CollectionDocument
from worker.spec import CollectionJobSpec
from worker.uploads import CollectionUpdate, CollectionUpload

NDJSON = {"content-type": "application/x-ndjson"}


def lines(*rows: dict[str, Any]) -> bytes:
    return "\n".join(json.dumps(row) for row in rows).encode()


def knowledge_base(client: TestClient, count: int) -> tuple[str, str]:
    """A collection of `count` documents whose texts no other test shares (the cache is
    database-wide); its id and the texts' tag."""
    tag = uuid4().hex[:8]
    body = lines(*({"id": f"kb-{i}", "text": f"{tag} article {i} on missing values"} for i in range(count)))
    response = client.post("/v1/collections", content=body, headers=NDJSON)
    assert response.status_code == 201, response.text
    return response.json()["id"], tag


def patch(client: TestClient, collection_id: str, body: bytes) -> Any:
    return client.patch(f"/v1/collections/{collection_id}", content=body, headers=NDJSON)


def ranked(client: TestClient, job_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    rows = client.get(f"/v1/jobs/{job_id}/results", params={"limit": 1000}).json()["results"]
    return {(row["query_id"], row["document_id"]): row for row in rows}


def test_an_update_adds_replaces_and_deletes_and_moves_the_version(client: TestClient) -> None:
    kb, tag = knowledge_base(client, 5)
    changes = lines(
        {"id": "kb-1", "text": "replaced text", "metadata": {"v": 2}},
        {"id": "kb-2", "deleted": True},
        {"id": "kb-3", "text": f"{tag} article 3 on missing values"},  # as stored: unchanged
        {"id": "kb-new", "text": "a new article"},
    )
    response = patch(client, kb, changes)
    assert response.status_code == 200, response.text
    update = response.json()
    assert (update["version"], update["documents"]) == (2, 5)
    assert [update[k] for k in ("added", "replaced", "deleted", "unchanged", "error_count")] == [
        1,
        1,
        1,
        1,
        0,
    ]
    collection = client.get(f"/v1/collections/{kb}").json()
    assert collection["version"] == 2 and collection["documents"] == 5 and collection["updated_at"]
    documents = client.get(f"/v1/collections/{kb}/documents").json()["documents"]
    texts = {d["id"]: (d["text"], d["metadata"]) for d in documents}
    assert sorted(texts) == ["kb-0", "kb-1", "kb-3", "kb-4", "kb-new"]
    assert texts["kb-1"] == ("replaced text", {"v": 2}) and texts["kb-new"] == ("a new article", None)

    same_again = patch(client, kb, lines({"id": "kb-1", "text": "replaced text", "metadata": {"v": 2}}))
    assert same_again.json()["unchanged"] == 1 and same_again.json()["version"] == 2  # nothing changed
    assert patch(client, "no-such-collection", changes).status_code == 404


def test_bad_update_lines_are_reported_and_nothing_stored_is_lost(client: TestClient) -> None:
    kb, _ = knowledge_base(client, 3)
    before = client.get(f"/v1/collections/{kb}/documents").json()
    body = b"\n".join(
        [
            b"{not json",
            json.dumps({"id": "kb-0", "text": 5}).encode(),
            json.dumps({"id": "kb-1", "deleted": False}).encode(),
            json.dumps({"id": "kb-9", "deleted": True}).encode(),  # no such document
            json.dumps({"id": "kb-2", "text": "kept"}).encode(),
            json.dumps({"id": "kb-2", "deleted": True}).encode(),  # the same id twice
        ]
    )
    response = patch(client, kb, body)
    assert response.status_code == 200, response.text
    update = response.json()
    assert (update["replaced"], update["error_count"], update["version"]) == (1, 5, 2)
    assert [(e["line"], e["field"]) for e in update["errors"]] == [
        (1, None),
        (2, "text"),
        (3, "deleted"),
        (4, "id"),
        (6, None),
    ]
    assert (
        "no document 'kb-9'" in update["errors"][3]["error"]
        and "duplicate id" in update["errors"][4]["error"]
    )

    all_bad = patch(client, kb, b'{"id": "kb-0"}\n{"id": "kb-1", "deleted": "yes"}')
    assert (
        all_bad.status_code == 422 and "no line was accepted (2 line(s) rejected" in all_bad.json()["error"]
    )
    assert client.get(f"/v1/collections/{kb}").json()["version"] == 2
    after = client.get(f"/v1/collections/{kb}/documents").json()["documents"]
    assert [d["id"] for d in after] == [d["id"] for d in before["documents"]]
    assert {d["id"]: d["text"] for d in after}["kb-2"] == "kept"


def test_a_job_reads_the_version_it_was_planned_against(session: Session, reranker: Reranker) -> None:
    upload = CollectionUpload(session, "snapshot", Settings(max_document_chars=10_000))
    upload.add([(i + 1, json.dumps({"id": f"d{i}", "text": f"old text {i}"}).encode()) for i in range(4)])
    kb = upload.finish()[0].id
    spec = CollectionJobSpec.model_validate(
        {"collection": kb, "queries": [{"id": "q", "text": "old or new?"}]}
    )
    job_id = service.submit_job(session, spec, TINY).id
    first, *_ = pipeline.plan_job(session, job_id, limits(task_pairs=2, queued_batches=1)).batches

    update = CollectionUpdate(session, kb, Settings(max_document_chars=10_000))  # lands while the job runs
    update.add([(1, b'{"id": "d0", "text": "new text 0"}'), (2, b'{"id": "d1", "deleted": true}')])
    update.add([(3, b'{"id": "d9", "text": "new document"}')])
    assert update.finish().version == 2

    followups = pipeline.score_batch(session, first, reranker, limits(task_pairs=2, queued_batches=1))
    while followups.batches:
        followups = pipeline.score_batch(session, followups.batches[0], reranker, limits(task_pairs=2))
    pipeline.finalize_job(session, job_id)
    job = service.job_status(session, job_id)
    assert (job.status, job.collection_version, job.progress.done) == ("completed", 1, 4)
    read = {row.document_id: row.best_chunk.text for row in service.results_page(session, job_id).results}
    assert read == {f"d{i}": f"old text {i}" for i in range(4)}  # version 1, whole

    # the replaced rows stay while the job refers to them; the next update after it is gone sweeps them
    removed = select(func.count()).where(
        CollectionDocument.collection_id == kb, CollectionDocument.removed_in.is_not(None)
    )
    assert session.scalar(removed) == 2
    service.delete_job(session, job_id)
    update = CollectionUpdate(session, kb, Settings(max_document_chars=10_000))
    update.add([(1, b'{"id": "d2", "deleted": true}')])
    assert update.finish().documents == 3
    assert session.scalar(removed) == 0

    again = service.submit_job(session, spec, TINY).id
    pipeline.run_job(session, again, reranker, limits())
    rerun = service.job_status(session, again)
    assert (rerun.collection_version, rerun.progress.total) == (3, 3)
    read = {row.document_id: row.best_chunk.text for row in service.results_page(session, again).results}
    assert read == {"d0": "new text 0", "d3": "old text 3", "d9": "new document"}


def test_a_job_run_again_after_an_update_scores_only_what_changed(client: TestClient) -> None:
    kb, _ = knowledge_base(client, 12)
    job = {"collection": kb, "queries": [{"id": "a", "text": "drop rows"}, {"id": "b", "text": "fill gaps"}]}
    first = wait_for(client, client.post("/v1/jobs", json=job).json()["id"])
    assert (first["status"], first["collection_version"], first["progress"]["cached"]) == ("completed", 1, 0)
    assert not any(row["cached"] for row in ranked(client, first["id"]).values())

    changes = lines(
        {"id": "kb-0", "text": "edited"}, {"id": "kb-1", "deleted": True}, {"id": "kb-x", "text": "added"}
    )
    assert patch(client, kb, changes).json()["version"] == 2
    second = wait_for(client, client.post("/v1/jobs", json=job).json()["id"])
    assert (second["collection_version"], second["progress"]["total"], second["progress"]["cached"]) == (
        2,
        24,
        20,
    )
    assert second["effective_max_length"] == first["effective_max_length"]
    scratch = wait_for(
        client, client.post("/v1/jobs", json={**job, "options": {"cache": False}}).json()["id"]
    )
    assert scratch["progress"]["cached"] == 0

    before, cached, uncached = (
        ranked(client, first["id"]),
        ranked(client, second["id"]),
        ranked(client, scratch["id"]),
    )
    assert {key for key, row in cached.items() if not row["cached"]} == {
        (query, document) for query in "ab" for document in ("kb-0", "kb-x")
    }
    for key, row in cached.items():
        if row["cached"]:
            assert row["raw_score"] == before[key]["raw_score"]
        assert (
            abs(row["raw_score"] - uncached[key]["raw_score"]) < 1e-5 and row["rank"] == uncached[key]["rank"]
        )
    header, *rows = client.get(f"/v1/jobs/{second['id']}/results.csv").text.splitlines()
    assert "cached" in header.split(",") and len(rows) == 24

    # the cache-off job kept nothing, so a third run finds what the second kept
    third = wait_for(client, client.post("/v1/jobs", json=job).json()["id"])
    assert third["progress"]["cached"] == 24


def test_the_cache_is_sized_and_pruned_by_collection_and_age(client: TestClient) -> None:
    kb, _ = knowledge_base(client, 4)
    job = {"collection": kb, "queries": [{"id": "q", "text": "how big is the cache?"}]}
    wait_for(client, client.post("/v1/jobs", json=job).json()["id"])
    size = client.get("/v1/cache").json()
    assert size["entries"] >= 4 and size["oldest"] <= size["newest"]
    assert "rerankq_score_cache_entries" in client.get("/metrics").text

    assert client.delete("/v1/cache").status_code == 422  # say what to prune
    assert client.delete("/v1/cache", params={"older_than_days": 1, "collection": kb}).json()["deleted"] == 0
    assert client.delete("/v1/cache", params={"collection": kb}).json()["deleted"] == 4
    assert client.get("/v1/cache").json()["entries"] == size["entries"] - 4
    again = wait_for(client, client.post("/v1/jobs", json=job).json()["id"])
    assert again["progress"]["cached"] == 0  # pruned: scored again
    assert client.delete("/v1/cache", params={"older_than_days": 0}).json()["deleted"] >= 4
    assert client.get("/v1/cache").json()["entries"] == 0


def test_the_cli_updates_a_collection_and_prunes_the_cache(
    api_server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    _, env = api_server
    kb = tmp_path / "kb.jsonl"
    kb.write_text('{"id": "a", "text": "alpha"}\n{"id": "b", "text": "beta"}\n')
    collection = json.loads(rerankq("upload-collection", str(kb), env=env).stdout)
    changes = tmp_path / "changes.jsonl"
    changes.write_text('{"id": "a", "text": "alpha, edited"}\n{"id": "b", "deleted": true}\n{"id": "c"}\n')
    updated = rerankq("update-collection", collection["id"], str(changes), env=env)
    assert updated.returncode == 0, updated.stderr
    update = json.loads(updated.stdout)
    assert (update["version"], update["replaced"], update["deleted"], update["error_count"]) == (2, 1, 1, 1)
    assert "changes.jsonl" in updated.stderr  # the progress bar
    refused = rerankq("update-collection", collection["id"], str(tmp_path / "missing.jsonl"), env=env)
    assert refused.returncode == 2

    assert "entries" in json.loads(rerankq("cache", "size", env=env).stdout)
    pruned = rerankq("cache", "prune", "--collection", collection["id"], env=env)
    assert pruned.returncode == 0 and pruned.stdout.strip() == "0 cache entries deleted"
    assert rerankq("cache", "prune", env=env).returncode == 1  # say what to prune
