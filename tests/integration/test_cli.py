"""The `rerankq` command as a user runs it: `run` on the embedded SQLite database with no servers,
and submit / status / results against a real `rerankq api` server and a real worker."""

import csv
import json
import os
from pathlib import Path

from tests.integration.helpers import EXAMPLES, rerankq


def test_run_reranks_a_file_with_no_servers(tiny_model: Path, tmp_path: Path) -> None:
    env = {**os.environ, "RERANK_MODEL": str(tiny_model), "RERANK_BROKER_URL": "redis://127.0.0.1:1/0"}
    env.pop("RERANK_DATABASE_URL", None)  # the embedded default: ./rerankq.db
    done = rerankq("run", str(EXAMPLES / "hr_faq_zh.jsonl"), "-o", "out.jsonl", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "100%" in done.stderr and "completed" in done.stderr  # the progress bar ran to the end
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    submitted = [json.loads(line) for line in (EXAMPLES / "hr_faq_zh.jsonl").read_text().splitlines()]
    assert len(rows) == sum(len(q["documents"]) for q in submitted)
    assert [r["query_id"] for r in rows] == [q["id"] for q in submitted for _ in q["documents"]]
    assert (tmp_path / "rerankq.db").exists()


def test_run_names_the_bad_line(tiny_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"id": "q1", "text": "x", "documents": [{"id": "d", "text": "y"}]}\n{"id": "q2", "text": ""}\n'
    )
    done = rerankq("run", str(bad), env={**os.environ, "RERANK_MODEL": str(tiny_model)}, cwd=tmp_path)
    assert done.returncode == 2
    assert "bad.jsonl:2: text" in done.stderr


def test_run_chunks_the_long_manual_unless_told_not_to(tiny_model: Path, tmp_path: Path) -> None:
    env = {**os.environ, "RERANK_MODEL": str(tiny_model), "RERANK_DATABASE_URL": f"sqlite:///{tmp_path}/r.db"}
    job = EXAMPLES / "manual_long.jsonl"
    manual = {d["id"]: d["text"] for d in json.loads(job.read_text())["documents"]}
    chunks = {}
    for flag in ("--chunking", "--no-chunking"):
        done = rerankq("run", str(job), "-o", f"{flag}.jsonl", flag, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        rows = [json.loads(line) for line in (tmp_path / f"{flag}.jsonl").read_text().splitlines()]
        for row in rows:
            best = row["best_chunk"]
            assert best["text"] == manual[row["document_id"]][best["start"] : best["end"]]
        chunks[flag] = max(row["chunks"] for row in rows)
    assert chunks == {"--chunking": chunks["--chunking"], "--no-chunking": 1} and chunks["--chunking"] > 3


def test_submit_wait_status_results(api_server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    _, env = api_server
    submitted = rerankq("submit", str(EXAMPLES / "pandas_en.jsonl"), "--wait", "--top-k", "3", env=env)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert "completed" in submitted.stderr and "pair" in submitted.stderr  # progress bar, then the outcome
    status = json.loads(rerankq("status", job_id, env=env).stdout)
    assert status["status"] == "completed" and status["options"]["top_k"] == 3
    exported = rerankq("results", job_id, "-o", str(tmp_path / "out.csv"), env=env)
    assert exported.returncode == 0, exported.stderr
    with (tmp_path / "out.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["query_id"], r["rank"]) for r in rows] == [
        (q, str(k)) for q in ("pd-q1", "pd-q2") for k in (1, 2, 3)
    ]
    missing = rerankq("status", "no-such-job", env=env)
    assert missing.returncode == 1 and "error 404" in missing.stderr


def test_submit_streams_and_names_a_bad_line_upload_collection(
    api_server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    _, env = api_server
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"id": "q1", "text": "x", "documents": [{"id": "d", "text": "y"}]}\n{"id": "q2", "text": ""}\n'
    )
    refused = rerankq("submit", str(bad), "--priority", "high", env=env)
    assert refused.returncode == 1 and "line 2: text" in refused.stderr
    assert rerankq("submit", str(bad), "--threshold", "2", env=env).stderr.startswith("rerankq: --threshold")

    kb = tmp_path / "kb.jsonl"
    kb.write_text('{"id": "a", "text": "alpha"}\n{"id": "b"}\n{"id": "c", "text": "gamma"}\n')
    uploaded = rerankq("upload-collection", str(kb), "--name", "kb", env=env)
    assert uploaded.returncode == 0, uploaded.stderr
    collection = json.loads(uploaded.stdout)
    assert (collection["name"], collection["documents"], collection["error_count"]) == ("kb", 2, 1)
    assert collection["errors"][0]["line"] == 2 and collection["errors"][0]["field"] == "text"


def test_jobs_cancel_delete_and_collections(api_server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    _, env = api_server
    job_id = rerankq("submit", str(EXAMPLES / "pandas_en.jsonl"), env=env).stdout.strip()
    listed = rerankq("jobs", "--limit", "5", env=env)
    assert listed.returncode == 0 and job_id in listed.stdout
    running = rerankq("delete", job_id, env=env)
    if running.returncode:  # still queued or running: deleting waits for a cancel
        assert running.returncode == 1 and "cancel it first" in running.stderr
        cancelled = rerankq("cancel", job_id, env=env)
        assert cancelled.returncode in (0, 1), cancelled.stderr  # 1: it finished in between (409)
        assert rerankq("delete", job_id, env=env).returncode == 0
    assert job_id not in rerankq("jobs", env=env).stdout
    assert rerankq("status", job_id, env=env).returncode == 1

    kb = tmp_path / "kb.jsonl"
    kb.write_text('{"id": "a", "text": "alpha"}\n')
    collection = json.loads(rerankq("upload-collection", str(kb), "--name", "listed", env=env).stdout)
    shown = rerankq("collections", env=env)
    assert shown.returncode == 0 and f"{collection['id']}  1 documents  0 rejected  listed" in shown.stdout
    rejected = tmp_path / "rejected.jsonl"
    rejected.write_text('{"id": "a"}\n')
    refused = rerankq("upload-collection", str(rejected), env=env)
    assert refused.returncode == 1 and "error 422: no document was accepted" in refused.stderr
