"""Latency of a synchronous rerank request (POST /v2/rerank, 20 documents) through the API, Redis,
one Celery worker and PostgreSQL: with the worker idle, and while a low-priority overnight job
keeps it busy. Baseline: the model's own time for the same request (cleaning, windows and the
engine, in this process, same model and threads). Prints p50/p95 of each and the differences.
The overnight job is submitted once the worker has a speed (the idle requests give it one), so its
batches are cut by time (RERANK_TASK_SECONDS, --task-seconds; 0: --task-pairs a batch): what a
request waits behind is one of them.

    python -m benchmarks.sync_latency --requests 40

Creates (and drops) the database `rerankq_sync_bench`."""

import itertools
import statistics
import time
from collections.abc import Callable

import httpx
import torch

from benchmarks.common import (
    add_model_options,
    add_server_options,
    benchmark_parser,
    make_pairs,
    positive,
    random_model,
)
from benchmarks.pipeline import job_batches, job_body
from benchmarks.services import drop_database, fresh_database, services, wait_for_speeds
from worker.engine import load_reranker
from worker.scoring import score_pairs
from worker.spec import JobOptions

DATABASE = "rerankq_sync_bench"


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """(p50, p95) in milliseconds."""
    cuts = statistics.quantiles(seconds, n=20, method="inclusive")
    return statistics.median(seconds) * 1000, cuts[18] * 1000


def timed(run: Callable[[], object], times: int) -> list[float]:
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        run()
        spent.append(time.perf_counter() - started)
    return spent


def sync_request(client: httpx.Client, query: str, documents: list[str]) -> Callable[[], object]:
    """A request of `documents` for `query`, numbered each time it is sent: a repeated request
    would be answered from the score cache, not scored."""
    numbers = itertools.count()

    def send() -> object:
        body = {"model": "bench", "query": f"{query} #{next(numbers)}", "documents": documents}
        response = client.post("/v2/rerank", json=body)
        response.raise_for_status()
        return response.json()

    return send


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--requests", type=positive, default=40, help="timed requests per scenario")
    parser.add_argument("--documents", type=positive, default=20)
    parser.add_argument(
        "--overnight-pairs", type=positive, default=60_000, help="the low-priority job's size"
    )
    parser.add_argument("--threads", type=positive, default=2)
    parser.add_argument(
        "--task-seconds", type=float, default=0.5, help="RERANK_TASK_SECONDS of the worker (0: --task-pairs)"
    )
    parser.add_argument("--task-pairs", type=positive, default=256, help="RERANK_TASK_PAIRS of the worker")
    add_model_options(parser, shape="tiny")
    add_server_options(parser, redis_db=13)
    args = parser.parse_args()

    model = random_model(args.cache, args.shape)
    pairs = make_pairs(args.documents, seed=7)
    query, documents = pairs[0][0], [document for _, document in pairs]
    torch.set_num_threads(args.threads)
    engine = load_reranker(str(model), device="cpu", dtype="fp32")
    options = JobOptions()  # what a sync request's job uses: cleaning and windows on
    request_pairs = [(query, document) for document in documents]

    def model_only() -> object:
        return score_pairs(engine, request_pairs, options, 128)

    database_url = fresh_database(args.postgres, DATABASE)
    env = {
        "RERANK_DATABASE_URL": database_url,
        "RERANK_BROKER_URL": args.redis,
        "RERANK_MODEL": str(model),
        "RERANK_TASK_SECONDS": str(args.task_seconds),
        "RERANK_TASK_PAIRS": str(args.task_pairs),
    }
    with services(env, workers=1, worker_threads=args.threads) as (client, _):
        send = sync_request(client, query, documents)
        timed(send, 3)  # warm-up
        timed(model_only, 3)
        # alternated, so that a change in the machine's load touches baseline and requests alike
        model_alone, idle = zip(
            *(timed(model_only, 1) + timed(send, 1) for _ in range(args.requests)), strict=True
        )
        if args.task_seconds:  # the overnight job is cut to the speed the requests gave the worker
            wait_for_speeds(client)
        overnight = {**job_body(make_pairs(args.overnight_pairs, seed=8)), "priority": "low"}
        job_id = client.post("/v1/jobs", json=overnight).json()["id"]
        while (job := client.get(f"/v1/jobs/{job_id}").json())["progress"]["done"] == 0:
            time.sleep(0.1)
        busy = timed(send, args.requests)
        job = client.get(f"/v1/jobs/{job_id}").json()
        client.post(f"/v1/jobs/{job_id}/cancel")
        batches = [len(batch) for batch in job_batches(database_url, job_id)]
    drop_database(args.postgres, DATABASE)
    assert job["status"] == "running", f"the overnight job ended before the measurement did: {job}"

    base50, base95 = percentiles(list(model_alone))
    rate = float(job["progress"]["pairs_per_second"])
    task = f"{args.task_seconds} s/task" if args.task_seconds else f"{args.task_pairs} pairs/task"
    print(
        f"random {args.shape}, fp32, {args.threads} threads, {args.documents} documents per request, "
        f"{args.requests} requests per row; overnight job: {args.overnight_pairs:,} pairs at low priority, "
        f"{task}: batches of {min(batches)}-{max(batches)} pairs, {statistics.mean(batches):,.0f} on average "
        f"({rate:,.0f} pairs/s, so about {statistics.mean(batches) / rate * 1000:,.0f} ms per batch), "
        f"{job['progress']['done']:,} scored by the end of the busy row; requests sent back to back"
    )
    print("| scenario | p50 ms | p95 ms | p50 over the model's own p50 | p95 / model's own p95 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| model alone (baseline: clean, windows, engine) | {base50:.1f} | {base95:.1f} | - | 1.00 |")
    for name, seconds in (("worker idle", list(idle)), ("overnight job running", busy)):
        p50, p95 = percentiles(seconds)
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {p50 - base50:+.1f} ms | {p95 / base95:.2f} |")


if __name__ == "__main__":
    main()
