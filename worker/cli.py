"""The `rerankq` command: servers (migrate, api, worker), a client of the API (submit, status,
results) and `run`, the whole pipeline in one process on SQLite with no servers."""

import logging
from pathlib import Path
from typing import Annotated

import typer

from worker import cli_jobs
from worker.cli_admin import cache_app, schedules_app
from worker.cli_jobs import OUTPUT_HELP, Chunking, CleanHtml, MaxLength, Threshold, TopK
from worker.cli_support import fail, outcome, plainly, read_settings
from worker.config import parse_device
from worker.keys_cli import keys_app

app = typer.Typer(
    help="rerankq: queue-driven cross-encoder reranking.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def migrate() -> None:
    """Create or upgrade the database schema (Alembic upgrade head)."""
    from worker.db import shown
    from worker.migrate import upgrade

    settings = read_settings()
    with plainly(settings):
        upgrade(settings.database_url)
    typer.echo(f"database {shown(settings.database_url)} is at the newest schema")


def api(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn

    _logging("info")
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port)


def worker(
    device: Annotated[
        str | None, typer.Option(help="auto | cpu | cuda | cuda:N (default: RERANK_DEVICE)")
    ] = None,
    queue: Annotated[str | None, typer.Option(help="The rerank queue (default: RERANK_QUEUE)")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on this port (default: RERANK_METRICS_PORT)")
    ] = None,
    loglevel: str = "info",
) -> None:
    """Run a Celery worker: one process, one model, loaded once before the first task. It takes
    plan tasks from the queue and batches of jobs made for its model from that model's queue. It
    refuses to start on a database without the newest schema (it would take tasks it cannot store),
    and waits for one that is down (up to RERANK_DATABASE_RETRY_SECONDS)."""
    settings = read_settings()
    if device:
        try:
            settings = settings.model_copy(update={"device": parse_device(device)})
        except ValueError as error:
            fail(f"--device: {error}")
    if queue:
        settings = settings.model_copy(update={"queue": queue})
    from worker.migrate import wait_for_schema
    from worker.processes import run_worker

    with plainly(settings):
        # before logging is set up: a refusal is one line; a database that is down is waited for
        wait_for_schema(settings.database_url, settings.database_retry_seconds)
        _logging(loglevel)
        run_worker(settings, loglevel, metrics_port or settings.metrics_port)


def reconcile(once: Annotated[bool, typer.Option(help="One pass, then exit.")] = False) -> None:
    """Repair what lost messages, killed workers and outages leave behind, every
    RERANK_RECONCILE_SECONDS: lapsed leases, lost messages, unreleased batches, unfinalized jobs."""
    settings = read_settings()
    _logging("info")
    from worker.processes import reconcile_forever, reconcile_once

    if once:
        typer.echo(str(reconcile_once(settings)))
    else:
        reconcile_forever(settings)


def beat(loglevel: str = "info") -> None:
    """Run Celery beat for schedules: every RERANK_BEAT_SECONDS a worker submits the runs that are
    due. Stateless (the database is the source of truth): safe to restart, or to run twice."""
    settings = read_settings()
    from worker.processes import run_beat

    _logging(loglevel)
    run_beat(settings, loglevel)


def run(
    file: Path,
    output: Annotated[Path, typer.Option("--output", "-o", help=OUTPUT_HELP)] = Path("results.jsonl"),
    threshold: Threshold = None,
    top_k: TopK = None,
    max_length: MaxLength = None,
    chunking: Chunking = True,
    clean_html: CleanHtml = True,
    keep: Annotated[bool, typer.Option(help="Keep the job in the database after writing results.")] = False,
) -> None:
    """The whole pipeline on this machine: no servers, the database of RERANK_DATABASE_URL (the
    embedded ./rerankq.db by default), an in-process worker. Its job is deleted once the results
    are written (--keep keeps it)."""
    from worker.db import shown
    from worker.embedded import run_file

    _logging("warning")
    settings = read_settings()
    options = cli_jobs.job_options(threshold, top_k, max_length, chunking, clean_html)
    cli_jobs.checked(output)
    with plainly(settings):
        count, job = run_file(file, output, options, settings, keep)
    where = f"kept in {shown(settings.database_url)}" if keep else "deleted"
    typer.echo(f"job {job.id} {job.status}: {count} results written to {output} (job {where})", err=True)
    outcome(job.model_dump(mode="json"))


def build_test_model(
    path: Path,
    shape: Annotated[str, typer.Option(help="tiny | base | v2-m3 (XLM-R) | bert-tiny (BERT)")] = "tiny",
) -> None:
    """Write a random-weight cross-encoder (trained tokenizer) for offline tests; scores mean nothing."""
    from worker.engine.random_model import build_random_reranker

    build_random_reranker(path, shape)
    typer.echo(f"random-weight {shape} reranker written to {path}")


# Registered here, in the order `rerankq --help` lists them.
for command in (
    migrate,
    api,
    worker,
    reconcile,
    beat,
    cli_jobs.submit,
    cli_jobs.upload_collection,
    cli_jobs.update_collection,
    cli_jobs.status,
    cli_jobs.jobs,
    cli_jobs.cancel,
    cli_jobs.delete,
    cli_jobs.collections,
    cli_jobs.results,
    run,
    cli_jobs.rerun,
    cli_jobs.qrels,
):
    app.command()(command)
app.command("eval")(cli_jobs.evaluate)
app.command("build-test-model")(build_test_model)
app.add_typer(cache_app, name="cache")
app.add_typer(schedules_app, name="schedules")
app.add_typer(keys_app, name="keys")

if __name__ == "__main__":
    app()
