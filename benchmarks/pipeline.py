"""How much of the engine's throughput the whole pipeline keeps: the same pairs scored by the
engine alone (`Reranker.score`, in this process) and as one job through API -> Redis -> a Celery
worker -> PostgreSQL, on the same model, dtype and threads, alternated over --rounds; one row per
RERANK_WORKER_BATCHES (default 2, then 1: overlap on, then off). The engine runs before the first
round and after each, and each job is set against the mean of the two engine runs around its round,
so a machine whose speed drifts between rounds touches both sides of every ratio. Prints the median
of the rounds' ratios and each round's, for the whole job (submission to completed) and for its
worker part alone (planned to completed: no upload, validation or stored documents). The client
waits for each job by long polls (GET ?wait=), as a script should. A third engine figure scores
the pairs cut as the planner cuts the job (longest document first, --task-pairs a batch), one call
a batch, before each round: what the job's batches cost the model without any database or queue.

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
from dataclasses import dataclass
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
    positive,
    random_model,
)
from benchmarks.services import drop_database, fresh_database, services, wait_for
from worker.engine import load_reranker

DATABASE = "rerankq_pipeline_bench"


def by_query(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """The documents of each distinct query text, in order: the job's queries."""
    documents: dict[str, list[str]] = defaultdict(list)
    for query, document in pairs:
        documents[query].append(document)
    return documents


def job_body(pairs: list[tuple[str, str]]) -> dict[str, object]:
    """The pairs as a job: one query per distinct query text, its documents in order."""
    queries = [
        {"id": f"q{i}", "text": query, "documents": [{"id": f"d{j}", "text": t} for j, t in enumerate(texts)]}
        for i, (query, texts) in enumerate(by_query(pairs).items())
    ]
    # the engine's work exactly: no cleaning, no windows (documents are cut at max_length)
    # cache off: every job of a benchmark is scored (the score cache would answer a repeated one)
    options = {"chunking": {"enabled": False}, "clean_html": False, "cache": False}
    return {"queries": queries, "options": options}


def planned_batches(pairs: list[tuple[str, str]], task_pairs: int) -> list[list[tuple[str, str]]]:
    """The pairs of job_body's job cut as worker.batching cuts it: longest document (in characters)
    first, ties in the order the job lists them, `task_pairs` a batch."""
    listed = [(query, document) for query, documents in by_query(pairs).items() for document in documents]
    ordered = sorted(listed, key=lambda pair: -len(pair[1]))  # stable: ties stay as listed
    return [ordered[start : start + task_pairs] for start in range(0, len(ordered), task_pairs)]


def seconds(job: dict[str, object], start: str, end: str) -> float:
    return (datetime.fromisoformat(str(job[end])) - datetime.fromisoformat(str(job[start]))).total_seconds()


@dataclass(frozen=True)
class JobTimes:
    """Seconds of one job: from submission to completed (the client's clock), from created to
    planned, and from planned to completed (the job's own timestamps)."""

    whole: float
    planning: float
    worker: float


def through_pipeline(client: httpx.Client, pairs: list[tuple[str, str]]) -> JobTimes:
    """Submit the pairs as one job and wait for it."""
    started = time.perf_counter()
    job = client.post("/v1/jobs", json=job_body(pairs)).json()
    done = wait_for(client, str(job["id"]))
    assert done["status"] == "completed", done
    whole = time.perf_counter() - started
    planning, worker = seconds(done, "created_at", "started_at"), seconds(done, "started_at", "finished_at")
    return JobTimes(whole, planning, worker)


def kept(alone: list[float], runs: list[float]) -> tuple[float, str]:
    """The median of the rounds' ratios (engine seconds over pipeline seconds, the engine's the mean
    of its runs before and after the round) and each round's, as percentages."""
    ratios = [(before + after) / 2 / run for before, after, run in zip(alone, alone[1:], runs, strict=False)]
    return median(ratios), " ".join(f"{ratio:.0%}" for ratio in ratios)


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--pairs", type=positive, default=20_000)
    parser.add_argument("--threads", type=positive, default=2, help="torch threads, engine and worker alike")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N, engine and worker alike")
    parser.add_argument("--dtype", default="auto", help="auto | fp32 | fp16 | bf16, engine and worker alike")
    parser.add_argument("--sqlite", type=Path, help="a SQLite file (recreated) instead of PostgreSQL")
    parser.add_argument("--task-pairs", type=positive, default=256, help="RERANK_TASK_PAIRS of the worker")
    parser.add_argument(
        "--worker-batches",
        type=positive,
        nargs="+",
        default=[2, 1],
        help="RERANK_WORKER_BATCHES of the worker, one row each (1: no overlap)",
    )
    parser.add_argument("--rounds", type=positive, default=5, help="engine and pipeline alternated, per row")
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

    planned = planned_batches(pairs, args.task_pairs)

    def engine_alone(cut: list[list[tuple[str, str]]]) -> float:
        started = time.perf_counter()
        for part in cut:
            engine.score(part, max_length=1024)
        return time.perf_counter() - started

    print(
        "| model | pairs | worker batches in hand | engine alone | engine in the job's batches | "
        "whole pipeline (submit -> completed) | kept | worker alone (planned -> completed) | kept |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with ExitStack() as stack:
        clients = {
            batches: stack.enter_context(stack_of(args, model, batches)) for batches in args.worker_batches
        }
        jobs: dict[int, list[JobTimes]] = defaultdict(list)
        for client in clients.values():
            through_pipeline(client, pairs[:512])  # warm-up
        alone, in_planned = [engine_alone([pairs])], []
        for _ in range(args.rounds):  # alternated, so a change in the machine's load touches every row
            in_planned.append(engine_alone(planned))
            for batches, client in clients.items():
                jobs[batches].append(through_pipeline(client, pairs))
            alone.append(engine_alone([pairs]))
    engine_rate = args.pairs / median(alone)
    planned_kept, planned_rounds = kept(alone, in_planned)
    engine_columns = (
        f"| {engine_rate:,.1f} pairs/s | {args.pairs / median(in_planned):,.1f} pairs/s "
        f"({planned_kept:.0%} of alone; rounds: {planned_rounds}) "
    )
    for batches in args.worker_batches:
        whole, worker = [job.whole for job in jobs[batches]], [job.worker for job in jobs[batches]]
        plan = median(job.planning for job in jobs[batches])
        # each round's own ratio too: this machine's speed drifts by 20 % and more between rounds
        (whole_kept, whole_rounds), (worker_kept, worker_rounds) = kept(alone, whole), kept(alone, worker)
        print(
            f"| random {args.shape}, {precision}, {where}, {args.task_pairs} pairs/task | {args.pairs:,} "
            f"| {batches} {engine_columns}"
            f"| {args.pairs / median(whole):,.1f} pairs/s ({median(whole):.1f} s; planning {plan:.1f} s) "
            f"| {whole_kept:.0%} (rounds: {whole_rounds}) "
            f"| {args.pairs / median(worker):,.1f} pairs/s ({median(worker):.1f} s) "
            f"| {worker_kept:.0%} (rounds: {worker_rounds}) |"
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
