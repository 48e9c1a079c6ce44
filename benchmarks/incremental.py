"""The nightly rerank of a knowledge base that changed a little, end to end on PostgreSQL with real
servers: upload a collection, run the standing queries over all of it (run 1), change 1 % of its
documents (edits, additions, deletions) with one PATCH, run the same queries again with the score
cache (run 2) and without it (run 2 uncached, the baseline), and check that the cached run's scores
and ranks equal the uncached run's.

    python -m benchmarks.incremental --documents 200000 --queries 5 --workers 2 [--distinct]

It creates and drops the database of --database (`rerankq_bench_incremental`) on the PostgreSQL
server of --postgres."""

import itertools
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from benchmarks.common import (
    add_model_options,
    add_server_options,
    benchmark_parser,
    make_pairs,
    positive,
    random_model,
)
from benchmarks.knowledge_base import collection_lines, in_chunks, report_until_done
from benchmarks.services import scratch_database, services

DATABASE = "rerankq_bench_incremental"


@dataclass(frozen=True)
class Run:
    name: str
    job: dict[str, Any]
    seconds: float


def change_lines(documents: int, share: float, seed: int = 5) -> tuple[list[bytes], dict[str, int]]:
    """`share` of the collection changed: 40 % of the changes edit a document (new text), 30 % add
    one, 30 % delete one; the lines of a PATCH and how many of each."""
    rng = random.Random(seed)
    changed = max(3, round(documents * share))
    edits, additions = round(changed * 0.4), round(changed * 0.3)
    deletions = changed - edits - additions
    touched = rng.sample(range(documents), edits + deletions)
    texts = [text for _, text in make_pairs(200, seed=6)]
    lines: list[dict[str, Any]] = [
        {"id": f"kb-{i}", "text": f"{rng.choice(texts)} (revised {i})"} for i in touched[:edits]
    ]
    lines += [{"id": f"kb-{i}", "deleted": True} for i in touched[edits:]]
    lines += [{"id": f"new-{i}", "text": f"{rng.choice(texts)} (added {i})"} for i in range(additions)]
    encoded = [(json.dumps(line, ensure_ascii=False) + "\n").encode() for line in lines]
    return encoded, {"edits": edits, "additions": additions, "deletions": deletions}


def run(api: httpx.Client, name: str, body: dict[str, Any]) -> Run:
    """Submit a job and wait for it; its seconds from submission to completion as the server
    recorded them (the polls' interval does not count)."""
    job = api.post("/v1/jobs", json=body).json()
    done = report_until_done(api, job["id"])
    seconds = datetime.fromisoformat(done["finished_at"]) - datetime.fromisoformat(done["created_at"])
    return Run(name, done, seconds.total_seconds())


Scores = dict[tuple[str, str], tuple[float, int]]  # (query, document) -> (raw score, rank)


def scores(api: httpx.Client, job_id: str) -> Scores:
    """(query, document) -> (raw score, rank) of a finished job, from its streamed export."""
    found = {}
    with api.stream("GET", f"/v1/jobs/{job_id}/results.jsonl") as response:
        response.raise_for_status()
        for line in response.iter_lines():
            row = json.loads(line)
            found[row["query_id"], row["document_id"]] = (row["raw_score"], row["rank"])
    return found


TOLERANCE = 1e-5  # fp32 logits of the same pair in two differently padded batches differ by ~1e-6


def equality(cached: Run, uncached: Run, api: httpx.Client) -> str:
    """Whether the cached run's results are the uncached run's: the same pairs, the largest
    difference of raw score, how many ranks differ, and whether every difference of rank is
    between scores within TOLERANCE of each other (the same text scored in two batches is such a
    tie: the cache keeps one of its scores)."""
    left, right = scores(api, cached.job["id"]), scores(api, uncached.job["id"])
    if left.keys() != right.keys():
        return f"NOT equal: {len(left.keys() ^ right.keys())} pairs not in both"
    largest = max(abs(left[key][0] - right[key][0]) for key in left)
    ranks = sum(left[key][1] != right[key][1] for key in left)
    holds = _order_holds(left, right)
    verdict = "equal" if largest <= TOLERANCE and holds else "NOT equal"
    return (
        f"{verdict}: {len(left):,} pairs, max |Δ raw score| {largest:.2g} (tolerance {TOLERANCE:g});"
        f" {ranks:,} ranks differ, {'all' if holds else 'not all'} between scores tied within the tolerance"
    )


def _order_holds(left: Scores, right: Scores) -> bool:
    """Whether `left`'s order of each query's documents is also `right`'s, up to ties within
    TOLERANCE: walking `left`'s ranks, `right`'s scores never rise by more than that."""
    ordered = sorted(left, key=lambda key: (key[0], left[key][1]))
    return all(a[0] != b[0] or right[b][0] <= right[a][0] + TOLERANCE for a, b in itertools.pairwise(ordered))


def table(runs: list[Run], update: str, check: str) -> Iterator[str]:
    yield "| run | pairs | from the cache | seconds (submit to completed) | speed-up vs run 1 |"
    yield "| --- | --- | --- | --- | --- |"
    first = runs[0].seconds
    for r in runs:
        progress = r.job["progress"]
        yield (
            f"| {r.name} | {progress['total']:,} | {progress['cached']:,} | {r.seconds:.1f} |"
            f" {first / r.seconds:.1f}x |"
        )
    cached, uncached = runs[1], runs[2]
    yield ""
    yield f"update: {update}"
    yield f"run 2 with the cache is {uncached.seconds / cached.seconds:.1f}x faster than run 2 without it"
    yield f"equality check (run 2 cached vs run 2 uncached): {check}"


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--documents", type=positive, default=200_000)
    parser.add_argument("--queries", type=positive, default=5)
    parser.add_argument("--change", type=float, default=0.01, help="share of the documents changed")
    parser.add_argument(
        "--workers", type=positive, default=2, help="CPU worker processes (one torch thread each)"
    )
    parser.add_argument(
        "--distinct", action="store_true", help="every text distinct (default: drawn from 2,000)"
    )
    add_model_options(parser)
    add_server_options(parser, redis_db=14)
    parser.add_argument("--database", default=DATABASE, help="created and dropped on --postgres")
    args = parser.parse_args()

    with scratch_database(args.postgres, args.database) as url:
        env = {"RERANK_DATABASE_URL": url, "RERANK_BROKER_URL": args.redis}
        env["RERANK_MODEL"] = str(random_model(args.cache, "tiny"))
        with services(env, args.workers, worker_threads=1) as (api, _):
            upload = api.post(
                "/v1/collections",
                content=in_chunks(collection_lines(args.documents, args.distinct)),
                headers={"content-type": "application/x-ndjson"},
            )
            upload.raise_for_status()
            kb = upload.json()["id"]
            queries = [
                {"id": f"q{i}", "text": q} for i, (q, _) in enumerate(make_pairs(args.queries, seed=3))
            ]
            body = {"collection": kb, "queries": queries}
            runs = [run(api, "run 1 (cache empty)", body)]

            lines, counts = change_lines(args.documents, args.change)
            started = time.perf_counter()
            changed = api.patch(
                f"/v1/collections/{kb}",
                content=in_chunks(iter(lines)),
                headers={"content-type": "application/x-ndjson"},
            )
            changed.raise_for_status()
            seconds = time.perf_counter() - started
            update = ", ".join(f"{n:,} {what}" for what, n in counts.items())
            update += f" in one PATCH ({seconds:.1f} s), version {changed.json()['version']}"

            runs.append(run(api, "run 2 (cache)", body))
            runs.append(run(api, "run 2 uncached (cache: false)", {**body, "options": {"cache": False}}))
            check = equality(runs[1], runs[2], api)
    texts = "distinct texts" if args.distinct else "texts drawn from 2,000"
    print(
        f"\n{args.documents:,} documents ({texts}) x {args.queries} queries, {args.workers} CPU workers,"
        " tiny model\n"
    )
    print("\n".join(table(runs, update, check)))


if __name__ == "__main__":
    main()
