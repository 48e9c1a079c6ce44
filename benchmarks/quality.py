"""Did reranking help, on real judgements? The held-out TREC DL 2019 queries (each with its
bi-encoder top 100 and graded judgements) reranked by the trained MiniLM cross-encoder through
rerankq's own pipeline and evaluation (service.submit_job with qrels, pipeline.run_job,
evaluation.evaluate: what GET /v1/jobs/{id}/evaluation answers), in this process on a fresh SQLite
file. Prints each measure of the baseline, the first stage's order as submitted, beside the
reranked order, and their ratio.

    python -m benchmarks.quality --queries 21 --k 100 --min-relevance 2"""

import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import benchmark_parser, positive
from benchmarks.heldout import TRAINED_MODEL, load_heldout
from worker import evaluation, pipeline, service
from worker.config import Settings
from worker.db import session_scope
from worker.engine import load_configured
from worker.migrate import upgrade
from worker.spec import JobSpec


def job_spec(queries: int, max_length: int) -> JobSpec:
    data = load_heldout(limit=queries)
    return JobSpec.model_validate(
        {
            "queries": [
                {
                    "id": q.query_id,
                    "text": q.text,
                    "documents": [{"id": c.doc_id, "text": c.text} for c in q.candidates],
                }
                for q in data.queries
            ],
            "qrels": [
                {"query_id": qid, "document_id": doc, "relevance": grade}
                for qid, grades in data.qrels.items()
                for doc, grade in grades.items()
            ],
            "options": {"chunking": {"enabled": False}, "clean_html": False, "max_length": max_length},
        }
    )


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--queries", type=positive, default=21, help="held-out queries (21 in all)")
    parser.add_argument("--k", type=positive, default=100, help="the cut-off of Recall@k")
    parser.add_argument("--min-relevance", type=int, default=2, help="TREC DL counts grades 2 and 3 relevant")
    parser.add_argument("--max-length", type=positive, default=512)
    parser.add_argument("--threads", type=positive, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    database = Path(tempfile.mkdtemp(prefix="rerankq-quality-")) / "quality.db"
    settings = Settings(
        database_url=f"sqlite:///{database}", model=str(TRAINED_MODEL), device="cpu", dtype="fp32"
    )
    upgrade(settings.database_url)
    reranker = load_configured(settings)
    started = time.perf_counter()
    with session_scope(settings.database_url) as session:
        job = service.submit_job(session, job_spec(args.queries, args.max_length), settings)
        pipeline.run_job(session, job.id, reranker, pipeline.Limits.from_settings(settings))
        found = evaluation.evaluate(session, job.id, args.k, args.min_relevance)
    seconds = time.perf_counter() - started
    print(f"{found.queries_evaluated} queries, {job.progress.total} pairs, {seconds:.0f} s on the CPU")
    print(f"relevant: relevance >= {found.min_relevance}\n")
    print("| measure | first stage (submitted order) | reranked | ratio |\n| --- | --- | --- | --- |")
    for field, label in (
        ("ndcg_at_10", "nDCG@10"),
        ("mrr_at_10", "MRR@10"),
        ("recall_at_k", f"Recall@{args.k}"),
    ):
        before, after = getattr(found.submitted, field), getattr(found.reranked, field)
        print(f"| {label} | {before:.4f} | {after:.4f} | {after / before if before else float('nan'):.2f}x |")


if __name__ == "__main__":
    main()
