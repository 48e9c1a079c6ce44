"""The `rerankq` command: servers (migrate, api, worker), a client of the API (submit, status,
results) and `run`, the whole pipeline in one process on SQLite with no servers."""

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from worker.config import Settings, get_settings, parse_device
from worker.db import database_problem
from worker.errors import RerankError
from worker.export import check_output
from worker.spec import JobOptions

app = typer.Typer(
    help="rerankq: queue-driven cross-encoder reranking.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("rerankq")

ApiUrl = Annotated[str, typer.Option(envvar="RERANK_API_URL", help="Base URL of the rerankq API.")]
DEFAULT_API = "http://127.0.0.1:8000"


# Exit codes (README, CLI): 0 done; 1 the API refused the request; 2 bad input, configuration,
# or a service that cannot be reached; a job that ran but did not complete: 3 failed, 4 cancelled.
REFUSED, UNUSABLE = 1, 2
JOB_EXIT = {"completed": 0, "failed": 3, "cancelled": 4}


def fail(message: str, code: int = UNUSABLE) -> NoReturn:
    """One plain line on stderr and a non-zero exit: what a person needs, no traceback."""
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    typer.echo(f"rerankq: {first}", err=True)
    raise typer.Exit(code)


def _settings() -> Settings:
    """The environment's Settings; a bad RERANK_ variable is one line naming it."""
    try:
        return get_settings()
    except ValidationError as error:
        first = error.errors()[0]
        fail(f"RERANK_{str(first['loc'][0]).upper()}: {first['msg']}")


@contextmanager
def plainly(settings: Settings) -> Iterator[None]:
    """What a person can fix, as one line: a bad file, a model or device that cannot be loaded, a
    database that cannot be reached or has no schema."""
    try:
        yield
    except RerankError as error:
        fail(error.message)
    except SQLAlchemyError as error:
        fail(database_problem(settings.database_url, error))


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic upgrade head)."""
    from worker.db import shown
    from worker.migrate import upgrade

    settings = _settings()
    with plainly(settings):
        upgrade(settings.database_url)
    typer.echo(f"database {shown(settings.database_url)} is at the newest schema")


@app.command()
def api(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn

    _logging("info")
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port)


@app.command()
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
    settings = _settings()
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


@app.command()
def reconcile(once: Annotated[bool, typer.Option(help="One pass, then exit.")] = False) -> None:
    """Repair what lost messages, killed workers and outages leave behind, every
    RERANK_RECONCILE_SECONDS: lapsed leases, lost messages, unreleased batches, unfinalized jobs."""
    settings = _settings()
    _logging("info")
    from worker.processes import reconcile_forever, reconcile_once

    if once:
        typer.echo(str(reconcile_once(settings)))
    else:
        reconcile_forever(settings)


def _options(
    threshold: float | None, top_k: int | None, max_length: int | None, chunking: bool, clean_html: bool
) -> JobOptions:
    given = {"threshold": threshold, "top_k": top_k, "max_length": max_length}
    try:
        return JobOptions.model_validate(
            {
                **{k: v for k, v in given.items() if v is not None},
                "chunking": {"enabled": chunking},
                "clean_html": clean_html,
            }
        )
    except ValidationError as error:
        first = error.errors()[0]
        fail(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}")


NDJSON = {"content-type": "application/x-ndjson"}
OUTPUT_HELP = "out.jsonl, out.csv or out.parquet (any case); - writes JSONL to stdout"
ExistingFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False)]
Threshold = Annotated[float | None, typer.Option(help="Relevant when score > threshold (default 0.5).")]
TopK = Annotated[int | None, typer.Option(help="Results kept per query.")]
MaxLength = Annotated[int | None, typer.Option(help="Tokens per pair (default 1024).")]
Chunking = Annotated[
    bool, typer.Option(help="Read long documents as overlapping windows (--no-chunking: truncate them).")
]
CleanHtml = Annotated[bool, typer.Option(help="Strip HTML tags, comments and control characters first.")]


def _unreachable(url: str, error: httpx.TransportError) -> NoReturn:
    fail(f"cannot reach the API at {url} ({error}); is `rerankq api` running? (--api-url)")


def _refused(response: httpx.Response) -> NoReturn:
    """The API's error in one line: its JSON `error`, or the first line of any other body."""
    try:
        message = str(response.json().get("error", response.text))
    except ValueError:
        message = response.text.strip() or response.reason_phrase
    fail(f"error {response.status_code}: {message}", code=REFUSED)


def _request(method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = httpx.request(method, url, timeout=60, **kwargs)
    except httpx.TransportError as error:
        _unreachable(url, error)
    if response.status_code >= 400:
        _refused(response)
    if not response.content:
        return {}
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        fail(f"{url} answered {response.status_code} with a body that is not JSON; is it rerankq's API?")
    return body


def _follow(api_url: str, job_id: str) -> dict[str, Any]:
    """Poll a job, with a progress bar, until it finishes; rate and ETA are the API's (the last
    minute's pace), not tqdm's own guess from the polls."""
    job = _request("GET", f"{api_url}/v1/jobs/{job_id}")
    bar_format = "{l_bar}{bar}| {n_fmt}/{total_fmt} {unit}s [{elapsed}{postfix}]"  # no tqdm rate/ETA
    with tqdm(total=job["progress"]["total"], unit="pair", desc=job_id[:8], bar_format=bar_format) as bar:
        while True:
            progress = job["progress"]
            bar.update(progress["done"] + progress["failed"] - bar.n)
            if progress["pairs_per_second"] is not None:
                rate, eta = progress["pairs_per_second"], progress["eta_seconds"]
                bar.set_postfix_str(f"{job['status']}, {rate:.1f} pairs/s, ETA {eta:.0f}s")
            if job["status"] in ("completed", "failed", "cancelled"):
                return job
            time.sleep(1)
            job = _request("GET", f"{api_url}/v1/jobs/{job_id}")


@app.command()
def submit(
    file: ExistingFile,
    api_url: ApiUrl = DEFAULT_API,
    wait: Annotated[bool, typer.Option(help="Show progress until the job finishes.")] = False,
    threshold: Threshold = None,
    top_k: TopK = None,
    max_length: MaxLength = None,
    chunking: Chunking = True,
    clean_html: CleanHtml = True,
    priority: Annotated[
        str | None, typer.Option(help="high | normal | low (default: by size, see RERANK_LOW_PRIORITY_PAIRS)")
    ] = None,
) -> None:
    """Submit a JSONL job file (one query with its documents per line), streamed, so its size does
    not matter; prints the job id. A bad line is named by the API and nothing is kept."""
    options = _options(threshold, top_k, max_length, chunking, clean_html)
    params = {
        "options": options.model_dump_json(exclude_unset=True),
        **({"priority": priority} if priority else {}),
    }
    job = _request("POST", f"{api_url}/v1/jobs", content=_blocks(file), headers=NDJSON, params=params)
    typer.echo(job["id"])
    if wait:
        job = _follow(api_url, job["id"])
        _outcome(job)


def _outcome(job: dict[str, Any]) -> None:
    """Say how a job ended; exit non-zero unless it completed (3 failed, 4 cancelled)."""
    error = f": {job['error']}" if job.get("error") else ""
    typer.echo(f"job {job['id']} {job['status']}{error}", err=True)
    if code := JOB_EXIT.get(job["status"], 0):
        raise typer.Exit(code)


@app.command("upload-collection")
def upload_collection(
    file: ExistingFile,
    name: Annotated[str | None, typer.Option(help="A name to recognise it by.")] = None,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Upload a knowledge base (JSONL: {"id", "text", "metadata"?} per line), streamed; prints the
    collection as JSON (its id, counts and the lines that were rejected)."""
    params = {"name": name} if name else {}
    collection = _request(
        "POST", f"{api_url}/v1/collections", content=_blocks(file), headers=NDJSON, params=params
    )
    typer.echo(json.dumps(collection, indent=2))


def _blocks(path: Path, size: int = 1 << 16) -> Iterator[bytes]:
    """A file read a block at a time, for a streamed upload."""
    with path.open("rb") as file:
        while block := file.read(size):
            yield block


@app.command()
def status(job_id: str, api_url: ApiUrl = DEFAULT_API) -> None:
    """Print a job's status and progress as JSON."""
    typer.echo(json.dumps(_request("GET", f"{api_url}/v1/jobs/{job_id}"), indent=2))


@app.command()
def jobs(
    status: Annotated[
        str | None, typer.Option(help="queued | running | completed | failed | cancelled")
    ] = None,
    limit: int = 50,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """List jobs, newest first: id, status, pairs done of total, when it was submitted."""
    params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
    for job in _request("GET", f"{api_url}/v1/jobs", params=params)["jobs"]:
        progress = job["progress"]
        typer.echo(
            f"{job['id']}  {job['status']:<9}  {progress['done']}/{progress['total']}  {job['created_at']}"
        )


@app.command()
def cancel(job_id: str, api_url: ApiUrl = DEFAULT_API) -> None:
    """Stop a job; what was scored stays, ranked, as its results."""
    job = _request("POST", f"{api_url}/v1/jobs/{job_id}/cancel")
    typer.echo(f"job {job['id']} {job['status']}: {job['progress']['done']} pairs scored, kept")


@app.command()
def delete(job_id: str, api_url: ApiUrl = DEFAULT_API) -> None:
    """Delete a finished job with its results (cancel a running one first)."""
    _request("DELETE", f"{api_url}/v1/jobs/{job_id}")
    typer.echo(f"job {job_id} deleted")


@app.command()
def collections(api_url: ApiUrl = DEFAULT_API) -> None:
    """List collections, newest first: id, documents, rejected lines, name."""
    for found in _request("GET", f"{api_url}/v1/collections")["collections"]:
        counts = f"{found['documents']} documents  {found['error_count']} rejected"
        typer.echo(f"{found['id']}  {counts}  {found['name'] or ''}")


@app.command()
def results(
    job_id: str,
    output: Annotated[Path, typer.Option("--output", "-o", help=OUTPUT_HELP)],
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Download every ranked result of a finished job, streamed: memory stays flat for any size."""
    from worker.export import write_results

    _checked(output)
    url = f"{api_url}/v1/jobs/{job_id}/results.jsonl"
    try:
        with httpx.stream("GET", url, timeout=60) as response:
            if response.status_code >= 400:
                response.read()
                _refused(response)
            count = write_results((json.loads(line) for line in response.iter_lines() if line), output)
    except httpx.TransportError as error:
        _unreachable(url, error)
    typer.echo(f"{count} results written to {output}", err=True)


@app.command()
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
    settings = _settings()
    options = _options(threshold, top_k, max_length, chunking, clean_html)
    _checked(output)
    with plainly(settings):
        count, job = run_file(file, output, options, settings, keep)
    where = f"kept in {shown(settings.database_url)}" if keep else "deleted"
    typer.echo(f"job {job.id} {job.status}: {count} results written to {output} (job {where})", err=True)
    _outcome(job.model_dump(mode="json"))


def _checked(output: Path) -> None:
    """Refuse an output file that cannot be written before any work is done."""
    try:
        check_output(output)
    except RerankError as error:
        fail(f"-o {output}: {error.message}")


@app.command("build-test-model")
def build_test_model(
    path: Path,
    shape: Annotated[str, typer.Option(help="tiny | base | v2-m3 (XLM-R) | bert-tiny (BERT)")] = "tiny",
) -> None:
    """Write a random-weight cross-encoder (trained tokenizer) for offline tests; scores mean nothing."""
    from worker.engine.random_model import build_random_reranker

    build_random_reranker(path, shape)
    typer.echo(f"random-weight {shape} reranker written to {path}")


if __name__ == "__main__":
    app()
