"""`rerankq run`: a job file through the same pipeline a Celery worker runs (plan, score every
batch, finalize), in this process, on the configured database (SQLite by default): no servers."""

import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from worker import pipeline, service
from worker.config import get_settings
from worker.db import session_scope
from worker.engine import load_reranker
from worker.engine.device import describe
from worker.jobfile import read_job_file, write_results
from worker.migrate import upgrade
from worker.spec import JobOptions


def run_file(path: Path, output: Path, options: JobOptions) -> tuple[int, dict[str, Any]]:
    """Rerank every query of a JSONL job file and write the ranked results to `output`."""
    settings = get_settings()
    spec = read_job_file(path, options)
    upgrade(settings.database_url)
    reranker = load_reranker(settings.model, settings.device, settings.dtype, settings.batch_tokens)
    tqdm.write(f"{settings.model} on {describe(reranker.device, reranker.dtype)}", file=sys.stderr)
    with session_scope(settings.database_url) as session:
        job = service.submit_job(session, spec, settings.model)
        batches = pipeline.plan_job(session, job["id"], settings.task_pairs)
        with tqdm(total=job["progress"]["total"], unit="pair", desc="reranking") as bar:
            for batch_id in batches:
                pipeline.score_batch(session, batch_id, reranker, settings.max_attempts, settings.max_windows)
                bar.update(service.job_status(session, job["id"])["progress"]["done"] - bar.n)
        pipeline.finalize_job(session, job["id"])
        count = write_results(
            service.iter_pages(
                lambda cursor: service.results_page(session, job["id"], limit=1000, cursor=cursor)
            ),
            output,
        )
        return count, service.job_status(session, job["id"])
