"""`rerankq run`: a job file through the same pipeline a Celery worker runs (plan, score every
batch, finalize), in this process, on the configured database (SQLite by default): no servers."""

import sys
from pathlib import Path

from tqdm import tqdm

from worker import pipeline, service
from worker.config import Settings
from worker.db import session_scope
from worker.engine import load_configured
from worker.engine.device import describe
from worker.export import records, write_results
from worker.jobfile import read_job_file
from worker.migrate import upgrade
from worker.spec import JobOptions
from worker.views import JobOut


def run_file(
    path: Path, output: Path, options: JobOptions, settings: Settings, keep: bool = False
) -> tuple[int, JobOut]:
    """Rerank every query of a JSONL job file and write the ranked results to `output`; the job is
    deleted afterwards unless `keep` (so the embedded database does not grow run after run)."""
    spec = read_job_file(path, options)
    upgrade(settings.database_url)
    reranker = load_configured(settings)
    tqdm.write(f"{settings.model} on {describe(reranker.device, reranker.dtype)}", file=sys.stderr)
    with session_scope(settings.database_url) as session:
        job = service.submit_job(session, spec, settings)
        with tqdm(total=job.progress.total, unit="pair", desc="reranking") as bar:

            def advance() -> None:
                progress = service.job_status(session, job.id).progress
                bar.update(progress.done + progress.failed - bar.n)

            pipeline.run_job(session, job.id, reranker, pipeline.Limits.from_settings(settings), advance)
        rows = (row for page in records(service.export_pages(session, job.id)) for row in page)
        count = write_results(rows, output)
        finished = service.job_status(session, job.id)
        if not keep:
            service.delete_job(session, job.id)
        return count, finished
