"""An overnight knowledge-base job end to end on PostgreSQL, with real servers: upload a collection
(streamed JSONL), rerank every query against every document, export the results (streamed), and
while it runs submit a small high-priority job. Prints the time of each stage, the API process's
peak memory (VmHWM) after ingest and after export, and the bytes each stored row takes.

    python -m benchmarks.knowledge_base --documents 200000 --queries 5 --workers 2
    python -m benchmarks.knowledge_base --documents 200000 --worker-batches 1 2   # overlap off, then on
    python -m benchmarks.knowledge_base --documents 24000 --task-seconds 0 0.5   # 256 pairs, then by time

A job of batches cut by time (RERANK_TASK_SECONDS) is submitted once its workers have a speed: a
2,000-pair job of its own documents goes first.

It creates (and drops) the database `rerankq_bench` on the PostgreSQL server of --postgres."""

import json
import os
import random
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from typing import Any

import httpx
import psycopg

from benchmarks.common import (
    add_model_options,
    add_server_options,
    benchmark_parser,
    make_pairs,
    positive,
    random_model,
)
from benchmarks.services import (
    drop_database,
    fresh_database,
    peak_rss_mb,
    services,
    wait_for,
    wait_for_speeds,
)
from worker.config import Settings

DATABASE = "rerankq_bench"
NO_CACHE = {"cache": False}  # both jobs are scored: the score cache would answer the second from the first


def collection_lines(count: int, distinct: bool = False) -> Iterator[bytes]:
    """`count` knowledge-base passages (10-250 words, a quarter Chinese), generated as they are sent:
    drawn from 2,000, so most texts repeat (the engine scores a repeated pair once), or each made
    distinct by a numbered title, as a real knowledge base's articles are."""
    texts = [document for _, document in make_pairs(2000, seed=1)]
    rng = random.Random(2)
    for i in range(count):
        text = f"Article {i}. {rng.choice(texts)}" if distinct else rng.choice(texts)
        line = {"id": f"kb-{i}", "text": text, "metadata": {"source": "bench", "n": i}}
        yield (json.dumps(line, ensure_ascii=False) + "\n").encode()


def in_chunks(lines: Iterator[bytes], size: int = 1 << 16) -> Iterator[bytes]:
    buffer = bytearray()
    for line in lines:
        buffer += line
        if len(buffer) >= size:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def report_until_done(api: httpx.Client, job_id: str) -> dict[str, Any]:
    """Poll a job every 5 s, printing its progress, until it finishes."""
    while True:
        job: dict[str, Any] = api.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        progress = job["progress"]
        rate, eta = progress["pairs_per_second"], progress["eta_seconds"]
        print(
            f"  {job['status']}: {progress['done']}/{progress['total']} pairs"
            + (f", {rate:.0f} pairs/s" if rate else "")
            + (f", eta {eta:.0f}s" if eta is not None else ""),
            file=sys.stderr,
        )
        time.sleep(5)


def overnight_job(api: httpx.Client, collection: str, queries: list[dict[str, str]]) -> list[tuple[str, str]]:
    """One job of every query against the whole collection, with a 20-pair high-priority job
    submitted once it is under way; its rows of the table."""
    started = time.perf_counter()
    job = api.post(
        "/v1/jobs", json={"collection": collection, "queries": queries, "options": NO_CACHE}
    ).json()
    rows = [("submit", f"{job['progress']['total']:,} pairs, priority {job['priority']}")]
    while api.get(f"/v1/jobs/{job['id']}").json()["progress"]["done"] < 1000:
        time.sleep(0.5)
    planned = api.get(f"/v1/jobs/{job['id']}").json()
    hot_documents = [{"id": f"d{i}", "text": text} for i, (_, text) in enumerate(make_pairs(20, seed=4))]
    small = {
        "queries": [{"id": "hot", "text": queries[0]["text"], "documents": hot_documents}],
        "priority": "high",
        "options": NO_CACHE,
    }
    sent = time.perf_counter()
    hot = api.post("/v1/jobs", json=small).json()
    wait_for(api, hot["id"])
    overtake = time.perf_counter() - sent
    done = report_until_done(api, job["id"])
    total = time.perf_counter() - started
    scored = done["progress"]["done"]
    return [
        *rows,
        (
            "plan (expand pairs, number them into batches)",
            f"{_seconds(planned, 'created_at', 'started_at'):.1f} s",
        ),
        (
            "submit -> completed (plan, score, rank)",
            f"{scored:,} pairs in {total:.0f} s ({scored / total:,.0f} pairs/s)",
        ),
        ("20-pair high-priority job during the run", f"completed {overtake:.1f} s after submission"),
        ("job", str(job["id"])),
    ]


def workers_env(env: dict[str, str], batches: int, task_seconds: float) -> dict[str, str]:
    """`env` for workers holding `batches` tasks each and cutting jobs into `task_seconds` tasks
    (0: RERANK_TASK_PAIRS), on a queue of their own."""
    queue = f"kb-{os.getpid()}-{batches}-{task_seconds:g}"
    return {
        **env,
        "RERANK_WORKER_BATCHES": str(batches),
        "RERANK_TASK_SECONDS": str(task_seconds),
        "RERANK_QUEUE": queue,
    }


def give_speeds(api: httpx.Client, queue: str) -> None:
    """A 2,000-pair job, then wait until every worker of `queue` has published its speed."""
    warm = [{"id": f"d{i}", "text": text} for i, (_, text) in enumerate(make_pairs(2000, seed=6))]
    job = api.post(
        "/v1/jobs", json={"queries": [{"id": "warm", "text": "warm-up", "documents": warm}]}
    ).json()
    wait_for(api, job["id"])
    wait_for_speeds(api, queue)


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--documents", type=positive, default=200_000)
    parser.add_argument("--queries", type=positive, default=5)
    parser.add_argument(
        "--workers", type=positive, default=2, help="CPU worker processes (one torch thread each)"
    )
    parser.add_argument(
        "--task-seconds",
        type=float,
        nargs="+",
        default=[0.5],
        help="RERANK_TASK_SECONDS of the workers (0: RERANK_TASK_PAIRS a task); one job per value, after"
        " each --worker-batches value",
    )
    parser.add_argument(
        "--worker-batches",
        type=positive,
        nargs="+",
        default=[2],
        help="RERANK_WORKER_BATCHES of the workers; one job per value, in this order, on the same collection"
        " (e.g. 1 2: overlap off, then on)",
    )
    add_model_options(parser)
    add_server_options(parser, redis_db=14)
    args = parser.parse_args()

    env = {
        "RERANK_DATABASE_URL": fresh_database(args.postgres, DATABASE),
        "RERANK_BROKER_URL": args.redis,
        "RERANK_MODEL": str(random_model(args.cache, "tiny")),
    }
    rows: list[tuple[str, str]] = []
    runs = [(b, s) for b in dict.fromkeys(args.worker_batches) for s in dict.fromkeys(args.task_seconds)]
    with ExitStack() as stacks:
        apis = {  # the same database; each its own queue and workers, idle while another's job runs
            run: stacks.enter_context(services(workers_env(env, *run), args.workers, worker_threads=1))
            for run in runs
        }
        api, api_pid = apis[runs[0]]
        started = time.perf_counter()
        upload = api.post(
            "/v1/collections",
            content=in_chunks(collection_lines(args.documents)),
            headers={"content-type": "application/x-ndjson"},
            params={"name": "bench"},
        )
        upload.raise_for_status()
        kb = upload.json()
        ingest = time.perf_counter() - started
        rows.append(
            ("ingest", f"{kb['documents']:,} documents in {ingest:.1f} s ({kb['documents'] / ingest:,.0f}/s)")
        )
        rows.append(("API peak RSS after ingest", f"{peak_rss_mb(api_pid):.0f} MB"))
        queries = [
            {"id": f"q{i}", "text": query} for i, (query, _) in enumerate(make_pairs(args.queries, seed=3))
        ]
        for batches, seconds in runs:
            run_api = apis[batches, seconds][0]
            if seconds:
                give_speeds(run_api, workers_env(env, batches, seconds)["RERANK_QUEUE"])
            job_rows = overnight_job(run_api, kb["id"], queries)
            job_id = job_rows.pop()[1]
            task = f"{seconds:g} s a task" if seconds else f"{Settings().task_pairs} pairs a task"
            label = f" ({args.workers} workers, {batches} batches in hand each, {task})"
            rows += [(stage + label, value) for stage, value in job_rows]
            with psycopg.connect(f"{args.postgres}/{DATABASE}") as db:
                count, mean = db.execute(
                    "SELECT count(*), avg(pairs) FROM batches WHERE job_id = %s", [job_id]
                ).fetchone() or (0, 0)
            rows.append((f"batches{label}", f"{count:,} of {mean:,.0f} pairs on average"))

        started = time.perf_counter()
        count = 0
        with api.stream("GET", f"/v1/jobs/{job_id}/results.jsonl") as response:
            response.raise_for_status()
            for _ in response.iter_lines():
                count += 1
        export = time.perf_counter() - started
        rows.append(
            ("export results.jsonl", f"{count:,} rows in {export:.1f} s ({count / export:,.0f} rows/s)")
        )
        rows.append(("API peak RSS after export", f"{peak_rss_mb(api_pid):.0f} MB"))

    with psycopg.connect(f"{args.postgres}/{DATABASE}") as db:
        for table in ("results", "documents", "collection_documents"):
            size, n = db.execute(
                f"SELECT pg_total_relation_size('{table}'), count(*) FROM {table}"
            ).fetchone() or (0, 1)
            rows.append((f"{table} (with indexes)", f"{size / n:.0f} bytes/row over {n:,} rows"))
    drop_database(args.postgres, DATABASE)
    print("\n| stage | measured |\n| --- | --- |")
    for stage, value in rows:
        print(f"| {stage} | {value} |")


def _seconds(job: dict[str, Any], start: str, end: str) -> float:
    return (datetime.fromisoformat(job[end]) - datetime.fromisoformat(job[start])).total_seconds()


if __name__ == "__main__":
    main()
