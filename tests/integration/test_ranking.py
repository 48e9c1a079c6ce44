"""A ranking smoke test on a trained reranker: held-out DL19 candidates reranked through the whole
pipeline (API -> Redis -> a real worker -> PostgreSQL) rank exactly as the engine alone ranks them."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks.heldout import HELDOUT, load_heldout
from tests.integration.conftest import WorkerProcess, make_client, queue_for
from tests.integration.helpers import heldout_job, wait_for
from worker.engine import load_reranker

QUERIES = 2  # of the 21 held-out queries: 200 pairs, enough for a ranking, quick on a CPU
MAX_LENGTH = 512
pytestmark = pytest.mark.skipif(not HELDOUT.exists(), reason=f"no held-out data at {HELDOUT}")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_pipeline_ranks_held_out_candidates_as_the_engine_does(
    db_url: str, start_own_worker: Callable[..., WorkerProcess], trained_model: Path
) -> None:
    data = load_heldout(limit=QUERIES)
    engine = load_reranker(str(trained_model), device="cpu", dtype="fp32")
    alone = engine.score(data.pairs(), max_length=MAX_LENGTH)

    queue = f"{queue_for(db_url)}-ranking"
    worker = start_own_worker(db_url, queue, model=str(trained_model), dtype="fp32")
    with make_client(db_url, worker.queue, str(trained_model)) as client:
        job = client.post("/v1/jobs", json=heldout_job(data, MAX_LENGTH)).json()
        done = wait_for(client, job["id"], timeout=600)
        assert done["status"] == "completed" and done["progress"]["done"] == len(alone), done
        export = client.get(f"/v1/jobs/{job['id']}/results.jsonl")
    rows: list[dict[str, Any]] = [json.loads(line) for line in export.text.split("\n") if line]
    by_pair = {(row["query_id"], row["document_id"]): row["raw_score"] for row in rows}
    piped = [by_pair[(q.query_id, c.doc_id)] for q in data.queries for c in q.candidates]

    assert max(abs(a - b) for a, b in zip(piped, alone, strict=True)) < 1e-4
    assert data.ndcg10(piped) == pytest.approx(data.ndcg10(alone), abs=1e-9)
    assert max(alone) - min(alone) > 1  # a trained model's spread: the comparison means something
    for query in data.queries:  # the pipeline's own ranks follow its scores, best first
        ranked = sorted((r for r in rows if r["query_id"] == query.query_id), key=lambda r: r["rank"])
        assert [r["raw_score"] for r in ranked] == sorted((r["raw_score"] for r in ranked), reverse=True)
