"""How much of the engine's throughput the whole pipeline keeps: the same pairs scored by the
engine alone (`Reranker.score`, in this process) and as one job through API -> Redis -> a Celery
worker -> PostgreSQL, on the same model, dtype and threads, alternated over --rounds; one row per
RERANK_WORKER_BATCHES (default 2, then 1: overlap on, then off). The engine runs before the first
round and after each, and each job is set against the mean of the two engine runs around its round,
so a machine whose speed drifts between rounds touches both sides of every ratio. Prints the median
of the rounds' ratios and each round's, for the whole job (submission to completed) and for its
worker part alone (planned to completed: no upload, validation or stored documents). The client
waits for each job by long polls (GET ?wait=), as a script should. A third engine figure scores
the pairs cut into the batches the planner cut that round's job into (read back from the job's
database), one call a batch, right after the round's jobs: what the job's batches cost the model
without any database or queue. The workers cut batches by time (RERANK_TASK_SECONDS, the default
0.5 s; --task-seconds 0: --task-pairs a batch), so the rounds start once the warm-up job has given
every worker a speed (GET /v1/workers).

    python -m benchmarks.pipeline --pairs 20000 --shape tiny
    python -m benchmarks.pipeline --device cuda --shape v2-m3 --sqlite /tmp/bench.db   # a GPU worker

Creates (and drops) the databases `<--database>_N` (N: worker batches; default
`rerankq_pipeline_bench_N`), or fresh SQLite files beside --sqlite."""

import argparse
import itertools
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
from sqlalchemy import select

from benchmarks.common import (
    add_model_options,
    add_server_options,
    benchmark_parser,
    make_pairs,
    positive,
    random_model,
)
from benchmarks.services import drop_database, fresh_database, services, wait_for, wait_for_speeds
from worker.db import session_scope
from worker.engine import load_reranker
from worker.models import Batch, BatchDocument, Document, Query

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


def job_batches(database_url: str, job_id: str) -> list[list[tuple[str, str]]]:
    """A job's (query, document) pairs as its plan cut them, one list a batch, in the batches' order."""
    with session_scope(database_url) as session:
        rows = session.execute(
            select(Batch.number, Query.text, Document.text)
            .join(BatchDocument, BatchDocument.batch_id == Batch.id)
            .join(Document, Document.id == BatchDocument.document_id)
            .join(Query, Query.id == Document.query_id)
            .where(Batch.job_id == job_id)
            .order_by(Batch.number, Document.id)
        ).all()
    return [
        [(query, text) for _, query, text in batch]
        for _, batch in itertools.groupby(rows, lambda row: row[0])
    ]


def seconds(job: dict[str, object], start: str, end: str) -> float:
    return (datetime.fromisoformat(str(job[end])) - datetime.fromisoformat(str(job[start]))).total_seconds()


@dataclass(frozen=True)
class JobTimes:
    """Seconds of one job: from submission to completed (the client's clock), from created to
    planned, and from planned to completed (the job's own timestamps)."""

    job_id: str
    whole: float
    planning: float
    worker: float


@dataclass(frozen=True)
class Stack:
    """The API's client of one stack and its job store."""

    client: httpx.Client
    database_url: str


def through_pipeline(client: httpx.Client, pairs: list[tuple[str, str]]) -> JobTimes:
    """Submit the pairs as one job and wait for it."""
    started = time.perf_counter()
    job = client.post("/v1/jobs", json=job_body(pairs)).json()
    done = wait_for(client, str(job["id"]))
    assert done["status"] == "completed", done
    whole = time.perf_counter() - started
    planning, worker = seconds(done, "created_at", "started_at"), seconds(done, "started_at", "finished_at")
    return JobTimes(str(job["id"]), whole, planning, worker)


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
    parser.add_argument(
        "--task-seconds",
        type=float,
        default=0.5,
        help="RERANK_TASK_SECONDS of the worker (0: --task-pairs a task)",
    )
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
    task = f"{args.task_seconds} s/task" if args.task_seconds else f"{args.task_pairs} pairs/task"

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
        stacks = {
            batches: stack.enter_context(stack_of(args, model, batches)) for batches in args.worker_batches
        }
        jobs: dict[int, list[JobTimes]] = defaultdict(list)
        for each in stacks.values():
            through_pipeline(each.client, pairs[:2048])  # warm-up, and the workers' first speed
            if args.task_seconds:
                wait_for_speeds(each.client)
        alone, in_planned, cut_sizes = [engine_alone([pairs])], [], []
        first = args.worker_batches[0]
        for _ in range(args.rounds):  # alternated, so a change in the machine's load touches every row
            for batches, each in stacks.items():
                jobs[batches].append(through_pipeline(each.client, pairs))
            cut = job_batches(stacks[first].database_url, jobs[first][-1].job_id)
            cut_sizes.append(len(cut))
            in_planned.append(engine_alone(cut))
            alone.append(engine_alone([pairs]))
    engine_rate = args.pairs / median(alone)
    planned_kept, planned_rounds = kept(alone, in_planned)
    engine_columns = (
        f"| {engine_rate:,.1f} pairs/s | {args.pairs / median(in_planned):,.1f} pairs/s "
        f"({planned_kept:.0%} of alone; rounds: {planned_rounds}; "
        f"batches: {' '.join(map(str, cut_sizes))}) "
    )
    for batches in args.worker_batches:
        whole, worker = [job.whole for job in jobs[batches]], [job.worker for job in jobs[batches]]
        plan = median(job.planning for job in jobs[batches])
        # each round's own ratio too: this machine's speed drifts by 20 % and more between rounds
        (whole_kept, whole_rounds), (worker_kept, worker_rounds) = kept(alone, whole), kept(alone, worker)
        print(
            f"| random {args.shape}, {precision}, {where}, {task} | {args.pairs:,} "
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
def stack_of(args: argparse.Namespace, model: Path, batches: int) -> Iterator[Stack]:
    """API and one worker holding `batches` tasks, on a store and a queue of their own."""
    sqlite = args.sqlite.with_suffix(f".{batches}.db") if args.sqlite else None
    if sqlite:
        sqlite.unlink(missing_ok=True)
    database_url = (
        f"sqlite:///{sqlite.resolve()}"
        if sqlite
        else fresh_database(args.postgres, f"{args.database}_{batches}")
    )
    env = {
        "RERANK_DATABASE_URL": database_url,
        "RERANK_BROKER_URL": args.redis,
        "RERANK_MODEL": str(model),
        "RERANK_DTYPE": args.dtype,
        "RERANK_TASK_SECONDS": str(args.task_seconds),
        "RERANK_HEARTBEAT_SECONDS": "1",  # a worker's speed is published a second after its batch
        "RERANK_TASK_PAIRS": str(args.task_pairs),
        "RERANK_WORKER_BATCHES": str(batches),
        "RERANK_QUEUE": f"bench-{os.getpid()}-{batches}",
    }
    with services(env, workers=1, worker_threads=args.threads, device=args.device) as (client, _):
        yield Stack(client, database_url)


if __name__ == "__main__":
    main()
