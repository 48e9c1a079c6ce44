"""How much of the engine's throughput the whole pipeline keeps: the same pairs scored by the
engine alone (`Reranker.score`, in this process) and as one job through API -> Redis -> a Celery
worker -> PostgreSQL, on the same model, dtype and threads. Prints both and the ratio.

    python -m benchmarks.pipeline --pairs 20000 --shape tiny
    python -m benchmarks.pipeline --device cuda --shape v2-m3 --sqlite /tmp/bench.db   # a GPU worker

Creates (and drops) the database `rerankq_pipeline_bench`, or a fresh SQLite file with --sqlite."""

import argparse
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import torch

from benchmarks.common import ROOT, make_pairs, random_model
from benchmarks.services import fresh_database, services, wait_for
from worker.engine import load_reranker


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
    return {"queries": queries, "options": {"chunking": {"enabled": False}, "clean_html": False}}


def seconds(job: dict[str, object], start: str, end: str) -> float:
    return (datetime.fromisoformat(str(job[end])) - datetime.fromisoformat(str(job[start]))).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--shape", default="tiny", help="tiny | base | v2-m3 (random weights)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, engine and worker alike")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N, engine and worker alike")
    parser.add_argument("--dtype", default="auto", help="auto | fp32 | fp16 | bf16, engine and worker alike")
    parser.add_argument("--sqlite", type=Path, help="a SQLite file (recreated) instead of PostgreSQL")
    parser.add_argument("--task-pairs", type=int, default=256, help="RERANK_TASK_PAIRS of the worker")
    parser.add_argument("--cache", type=Path, default=ROOT / ".models")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args()

    model = random_model(args.cache, args.shape)
    pairs = make_pairs(args.pairs, seed=5)
    torch.set_num_threads(args.threads)
    engine = load_reranker(str(model), device=args.device, dtype=args.dtype)
    precision = str(engine.dtype).removeprefix("torch.")
    engine.score(pairs[:64])  # warm-up
    started = time.perf_counter()
    engine.score(pairs, max_length=1024)
    alone = args.pairs / (time.perf_counter() - started)
    where = f"{args.threads} threads" if engine.device.type == "cpu" else str(engine.device)
    engine_on = f"{precision}, {where}"
    del engine

    if args.sqlite:
        args.sqlite.unlink(missing_ok=True)
    env = {
        "RERANK_DATABASE_URL": f"sqlite:///{args.sqlite.resolve()}"
        if args.sqlite
        else fresh_database(args.postgres, "rerankq_pipeline_bench"),
        "RERANK_BROKER_URL": args.redis,
        "RERANK_MODEL": str(model),
        "RERANK_DTYPE": args.dtype,
        "RERANK_TASK_PAIRS": str(args.task_pairs),
    }
    with services(env, workers=1, worker_threads=args.threads, device=args.device) as (client, _):
        started = time.perf_counter()
        job = client.post("/v1/jobs", json=job_body(pairs)).json()
        done = wait_for(client, str(job["id"]))
        wall = time.perf_counter() - started
    assert done["status"] == "completed", done
    pipeline = args.pairs / wall
    planning = seconds(done, "created_at", "started_at")
    print("| model | pairs | engine alone | whole pipeline (submit -> completed) | kept |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(
        f"| random {args.shape}, {engine_on}, {args.task_pairs} pairs/task | {args.pairs:,} "
        f"| {alone:,.1f} pairs/s "
        f"| {pipeline:,.1f} pairs/s ({wall:.1f} s; planning {planning:.1f} s) "
        f"| {pipeline / alone:.0%} |"
    )


if __name__ == "__main__":
    main()
