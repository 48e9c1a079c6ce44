"""How much of the engine's throughput the whole pipeline keeps: the same pairs scored by the
engine alone (`Reranker.score`, in this process) and as one job through API -> Redis -> a Celery
worker -> PostgreSQL, on the same model, dtype and threads, alternated over --rounds; one row per
RERANK_WORKER_BATCHES (default 2, then 1: overlap on, then off). Prints the medians, their ratio and
each round's ratio. The client waits for each job by long polls (GET ?wait=), as a script should.

    python -m benchmarks.pipeline --pairs 20000 --shape tiny
    python -m benchmarks.pipeline --device cuda --shape v2-m3 --sqlite /tmp/bench.db   # a GPU worker

Creates (and drops) the databases `<--database>_N` (N: worker batches; default
`rerankq_pipeline_bench_N`), or fresh SQLite files beside --sqlite."""

import argparse
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from statistics import median

import httpx
import torch

from benchmarks.common import (
    add_model_options,
    add_server_options,
    benchmark_parser,
    make_pairs,
    random_model,
)
from benchmarks.services import drop_database, fresh_database, services, wait_for
from worker.engine import load_reranker

DATABASE = "rerankq_pipeline_bench"


def job_body(pairs: list[tuple[str, str]]) -> dict[str, object]:
    """The pairs as a job: one query per distinct query text, its documents in order."""
    documents: dict[str, list[str]] = defaultdict(list)
    for query, document in pairs:
        documents[query].append(document)
    queries = [
        {"id": f"q{i}", "text": query, "documents": [{"id": f"d{j}", "text": t} for j, t in enumerate(texts)]}
        for i, (query, texts) in enumerate(documents.items())
    ]
    # the engine's work exactly: no cleaning, no windows (documents are cut at max_length)
    # cache off: every job of a benchmark is scored (the score cache would answer a repeated one)
    options = {"chunking": {"enabled": False}, "clean_html": False, "cache": False}
    return {"queries": queries, "options": options}


def seconds(job: dict[str, object], start: str, end: str) -> float:
    return (datetime.fromisoformat(str(job[end])) - datetime.fromisoformat(str(job[start]))).total_seconds()


def through_pipeline(client: httpx.Client, pairs: list[tuple[str, str]]) -> tuple[float, float]:
    """Submit the pairs as one job and wait for it: (seconds from submission to completed, of which
    planning)."""
    started = time.perf_counter()
    job = client.post("/v1/jobs", json=job_body(pairs)).json()
    done = wait_for(client, str(job["id"]))
    assert done["status"] == "completed", done
    return time.perf_counter() - started, seconds(done, "created_at", "started_at")


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=2, help="torch threads, engine and worker alike")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N, engine and worker alike")
    parser.add_argument("--dtype", default="auto", help="auto | fp32 | fp16 | bf16, engine and worker alike")
    parser.add_argument("--sqlite", type=Path, help="a SQLite file (recreated) instead of PostgreSQL")
    parser.add_argument("--task-pairs", type=int, default=256, help="RERANK_TASK_PAIRS of the worker")
    parser.add_argument(
        "--worker-batches",
        type=int,
        nargs="+",
        default=[2, 1],
        help="RERANK_WORKER_BATCHES of the worker, one row each (1: no overlap)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="engine and pipeline alternated, per row")
    add_model_options(parser, shape="tiny")
    add_server_options(parser, redis_db=13)
    parser.add_argument("--database", default=DATABASE, help="name prefix of the databases created")
    args = parser.parse_args()

    model = random_model(args.cache, args.shape)
    pairs = make_pairs(args.pairs, seed=5)
    torch.set_num_threads(args.threads)
    engine = load_reranker(str(model), device=args.device, dtype=args.dtype)
    precision = str(engine.dtype).removeprefix("torch.")
    engine.score(pairs[:64])  # warm-up
    where = f"{args.threads} threads" if engine.device.type == "cpu" else str(engine.device)

    def engine_alone() -> float:
        started = time.perf_counter()
        engine.score(pairs, max_length=1024)
        return time.perf_counter() - started

    print(
        "| model | pairs | worker batches in hand | engine alone "
        "| whole pipeline (submit -> completed) | kept |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    with ExitStack() as stack:
        clients = {
            batches: stack.enter_context(stack_of(args, model, batches)) for batches in args.worker_batches
        }
        alone: list[float] = []
        whole: dict[int, list[float]] = defaultdict(list)
        planning: dict[int, list[float]] = defaultdict(list)
        for client in clients.values():
            through_pipeline(client, pairs[:512])  # warm-up
        for _ in range(args.rounds):  # alternated, so a change in the machine's load touches every row
            alone.append(engine_alone())
            for batches, client in clients.items():
                wall, plan = through_pipeline(client, pairs)
                whole[batches].append(wall)
                planning[batches].append(plan)
    engine_rate = args.pairs / median(alone)
    for batches in args.worker_batches:
        wall, plan = median(whole[batches]), median(planning[batches])
        rate = args.pairs / wall
        # each round's own ratio too: this machine's speed drifts by 20 % and more between rounds
        rounds = " ".join(f"{a / w:.0%}" for a, w in zip(alone, whole[batches], strict=True))
        print(
            f"| random {args.shape}, {precision}, {where}, {args.task_pairs} pairs/task | {args.pairs:,} "
            f"| {batches} | {engine_rate:,.1f} pairs/s "
            f"| {rate:,.1f} pairs/s ({wall:.1f} s; planning {plan:.1f} s) "
            f"| {rate / engine_rate:.0%} (rounds: {rounds}) |"
        )
    if not args.sqlite:
        for batches in args.worker_batches:
            drop_database(args.postgres, f"{args.database}_{batches}")


@contextmanager
def stack_of(args: argparse.Namespace, model: Path, batches: int) -> Iterator[httpx.Client]:
    """API and one worker holding `batches` tasks, on a store and a queue of their own."""
    sqlite = args.sqlite.with_suffix(f".{batches}.db") if args.sqlite else None
    if sqlite:
        sqlite.unlink(missing_ok=True)
    env = {
        "RERANK_DATABASE_URL": f"sqlite:///{sqlite.resolve()}"
        if sqlite
        else fresh_database(args.postgres, f"{args.database}_{batches}"),
        "RERANK_BROKER_URL": args.redis,
        "RERANK_MODEL": str(model),
        "RERANK_DTYPE": args.dtype,
        "RERANK_TASK_PAIRS": str(args.task_pairs),
        "RERANK_WORKER_BATCHES": str(batches),
        "RERANK_QUEUE": f"bench-{os.getpid()}-{batches}",
    }
    with services(env, workers=1, worker_threads=args.threads, device=args.device) as (client, _):
        yield client


if __name__ == "__main__":
    main()
