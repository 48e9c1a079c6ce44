"""The `rerankq` command: servers (migrate, api, worker), a client of the API (submit, status,
results) and `run`, the whole pipeline in one process on SQLite with no servers."""

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from pydantic import ValidationError
from tqdm import tqdm

from worker.cli_support import JOB_EXIT, REFUSED, fail, plainly, read_settings
from worker.config import parse_device
from worker.errors import RerankError
from worker.export import check_output
from worker.keys_cli import keys_app
from worker.spec import JobOptions

app = typer.Typer(
    help="rerankq: queue-driven cross-encoder reranking.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("rerankq")

ApiUrl = Annotated[str, typer.Option(envvar="RERANK_API_URL", help="Base URL of the rerankq API.")]
DEFAULT_API = "http://127.0.0.1:8000"
ApiKey = Annotated[
    str | None,
    typer.Option(envvar="RERANK_API_KEY", help="API key (`rerankq keys create`).", show_default=False),
]


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic upgrade head)."""
    from worker.db import shown
    from worker.migrate import upgrade

    settings = read_settings()
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


@app.command()
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


@app.command()
def beat(loglevel: str = "info") -> None:
    """Run Celery beat for schedules: every RERANK_BEAT_SECONDS a worker submits the runs that are
    due. Stateless (the database is the source of truth): safe to restart, or to run twice."""
    settings = read_settings()
    from worker.processes import run_beat

    _logging(loglevel)
    run_beat(settings, loglevel)


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


def _auth(api_key: str | None, headers: dict[str, str] | None = None) -> dict[str, str]:
    """Request headers with the API key as a bearer token, if one is given."""
    return {**(headers or {}), **({"Authorization": f"Bearer {api_key}"} if api_key else {})}


def _request(method: str, url: str, api_key: str | None, **kwargs: Any) -> dict[str, Any]:
    kwargs["headers"] = _auth(api_key, kwargs.get("headers"))
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


def _follow(api_url: str, job_id: str, api_key: str | None) -> dict[str, Any]:
    """Poll a job, with a progress bar, until it finishes; rate and ETA are the API's (the last
    minute's pace), not tqdm's own guess from the polls."""
    job = _request("GET", f"{api_url}/v1/jobs/{job_id}", api_key)
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
            job = _request("GET", f"{api_url}/v1/jobs/{job_id}", api_key)


@app.command()
def submit(
    file: ExistingFile,
    api_url: ApiUrl = DEFAULT_API,
    api_key: ApiKey = None,
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
    job = _request(
        "POST", f"{api_url}/v1/jobs", api_key, content=_blocks(file), headers=NDJSON, params=params
    )
    typer.echo(job["id"])
    if wait:
        job = _follow(api_url, job["id"], api_key)
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
    api_key: ApiKey = None,
) -> None:
    """Upload a knowledge base (JSONL: {"id", "text", "metadata"?} per line), streamed; prints the
    collection as JSON (its id, counts and the lines that were rejected)."""
    params = {"name": name} if name else {}
    collection = _request(
        "POST", f"{api_url}/v1/collections", api_key, content=_blocks(file), headers=NDJSON, params=params
    )
    typer.echo(json.dumps(collection, indent=2))


@app.command("update-collection")
def update_collection(
    collection_id: str, file: ExistingFile, api_url: ApiUrl = DEFAULT_API, api_key: ApiKey = None
) -> None:
    """Change a collection in place (JSONL: {"id", "text", "metadata"?} adds or replaces a
    document, {"id", "deleted": true} deletes one), streamed; prints what changed, the new version
    and the lines that were rejected, as JSON."""
    url = f"{api_url}/v1/collections/{collection_id}"
    typer.echo(json.dumps(_request("PATCH", url, api_key, content=_blocks(file), headers=NDJSON), indent=2))


def _blocks(path: Path, size: int = 1 << 16) -> Iterator[bytes]:
    """A file read a block at a time, for a streamed upload, with a progress bar of bytes sent."""
    with (
        path.open("rb") as file,
        tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name) as bar,
    ):
        while block := file.read(size):
            bar.update(len(block))
            yield block


cache = typer.Typer(help="The score cache: its size, and pruning it.", no_args_is_help=True)
app.add_typer(cache, name="cache")


@cache.command("size")
def cache_size(api_url: ApiUrl = DEFAULT_API, api_key: ApiKey = None) -> None:
    """Print how many pairs' scores the cache keeps, and the oldest and newest entry's time."""
    typer.echo(json.dumps(_request("GET", f"{api_url}/v1/cache", api_key), indent=2))


@cache.command("prune")
def cache_prune(
    older_than: Annotated[
        float | None, typer.Option(help="Delete entries kept more than this many days ago.")
    ] = None,
    collection: Annotated[
        str | None, typer.Option(help="Delete entries kept for jobs over this collection.")
    ] = None,
    api_url: ApiUrl = DEFAULT_API,
    api_key: ApiKey = None,
) -> None:
    """Delete score cache entries by age and/or collection (both: entries that match both)."""
    asked = {"older_than_days": older_than, "collection": collection}
    params = {key: value for key, value in asked.items() if value is not None}
    pruned = _request("DELETE", f"{api_url}/v1/cache", api_key, params=params)
    typer.echo(f"{pruned['deleted']} cache entries deleted")


@app.command()
def status(job_id: str, api_url: ApiUrl = DEFAULT_API, api_key: ApiKey = None) -> None:
    """Print a job's status and progress as JSON."""
    typer.echo(json.dumps(_request("GET", f"{api_url}/v1/jobs/{job_id}", api_key), indent=2))


@app.command()
def jobs(
    status: Annotated[
        str | None, typer.Option(help="queued | running | completed | failed | cancelled")
    ] = None,
    limit: int = 50,
    api_url: ApiUrl = DEFAULT_API,
    api_key: ApiKey = None,
) -> None:
    """List jobs, newest first: id, status, pairs done of total, when it was submitted."""
    params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
    for job in _request("GET", f"{api_url}/v1/jobs", api_key, params=params)["jobs"]:
        progress = job["progress"]
        typer.echo(
            f"{job['id']}  {job['status']:<9}  {progress['done']}/{progress['total']}  {job['created_at']}"
        )


@app.command()
def cancel(job_id: str, api_url: ApiUrl = DEFAULT_API, api_key: ApiKey = None) -> None:
    """Stop a job; what was scored stays, ranked, as its results."""
    job = _request("POST", f"{api_url}/v1/jobs/{job_id}/cancel", api_key)
    typer.echo(f"job {job['id']} {job['status']}: {job['progress']['done']} pairs scored, kept")


@app.command()
def delete(job_id: str, api_url: ApiUrl = DEFAULT_API, api_key: ApiKey = None) -> None:
    """Delete a finished job with its results (cancel a running one first)."""
    _request("DELETE", f"{api_url}/v1/jobs/{job_id}", api_key)
    typer.echo(f"job {job_id} deleted")


@app.command()
def collections(api_url: ApiUrl = DEFAULT_API, api_key: ApiKey = None) -> None:
    """List collections, newest first: id, documents, rejected lines, name."""
    for found in _request("GET", f"{api_url}/v1/collections", api_key)["collections"]:
        counts = f"{found['documents']} documents  {found['error_count']} rejected"
        typer.echo(f"{found['id']}  {counts}  {found['name'] or ''}")


@app.command()
def results(
    job_id: str,
    output: Annotated[Path, typer.Option("--output", "-o", help=OUTPUT_HELP)],
    api_url: ApiUrl = DEFAULT_API,
    api_key: ApiKey = None,
) -> None:
    """Download every ranked result of a finished job, streamed: memory stays flat for any size."""
    from worker.export import write_results

    _checked(output)
    url = f"{api_url}/v1/jobs/{job_id}/results.jsonl"
    try:
        with httpx.stream("GET", url, headers=_auth(api_key), timeout=60) as response:
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
    settings = read_settings()
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


@app.command()
def rerun(
    job_id: str,
    api_url: ApiUrl = DEFAULT_API,
    api_key: ApiKey = None,
    wait: Annotated[bool, typer.Option(help="Show progress until the new job finishes.")] = False,
) -> None:
    """Submit a job again as a new job (same queries, documents or collection, options,
    judgements); prints the new job's id."""
    job = _request("POST", f"{api_url}/v1/jobs/{job_id}/rerun", api_key)
    typer.echo(job["id"])
    if wait:
        _outcome(_follow(api_url, job["id"], api_key))


@app.command()
def qrels(
    job_id: str,
    file: ExistingFile,
    trec: Annotated[
        bool | None, typer.Option(help="TREC qrels (query iteration doc relevance); default: unless *.jsonl")
    ] = None,
    api_url: ApiUrl = DEFAULT_API,
    api_key: ApiKey = None,
) -> None:
    """Add relevance judgements to a job, from a TREC qrels file or JSONL
    ({"query_id", "document_id", "relevance"} per line); a bad line refuses the file."""
    is_trec = trec if trec is not None else file.suffix.lower() not in (".jsonl", ".ndjson")
    headers = {"content-type": "text/plain" if is_trec else NDJSON["content-type"]}
    found = _request(
        "POST", f"{api_url}/v1/jobs/{job_id}/qrels", api_key, content=_blocks(file), headers=headers
    )
    typer.echo(f"job {job_id}: {found['judgements']} judgements over {found['queries']} queries")


@app.command("eval")
def evaluate(
    job_id: str,
    k: Annotated[int, typer.Option(help="The cut-off of Recall@k.")] = 100,
    min_relevance: Annotated[int, typer.Option(help="The least relevance counted relevant.")] = 1,
    api_url: ApiUrl = DEFAULT_API,
    api_key: ApiKey = None,
) -> None:
    """Print nDCG@10, MRR@10 and Recall@k of the submitted and the reranked order, per query and
    mean (the job's judgements, measured by ir-measures)."""
    params = {"k": k, "min_relevance": min_relevance}
    found = _request("GET", f"{api_url}/v1/jobs/{job_id}/evaluation", api_key, params=params)
    names = ("ndcg_at_10", "mrr_at_10", "recall_at_k")
    header = ("nDCG@10", "MRR@10", f"R@{k}")
    width = max([len("mean"), *(len(q["query_id"]) for q in found["queries"])])
    typer.echo(f"{'query':<{width}}  order     " + "  ".join(f"{h:>8}" for h in header))
    rows = [(q["query_id"], q["submitted"], q["reranked"]) for q in found["queries"]]
    for query_id, submitted, reranked in [*rows, ("mean", found["submitted"], found["reranked"])]:
        for order, scores in (("submitted", submitted), ("reranked", reranked)):
            values = "  ".join(f"{scores[name]:>8.4f}" for name in names)
            typer.echo(f"{query_id:<{width}}  {order:<9} {values}")
            query_id = ""
    typer.echo(
        f"{found['queries_evaluated']} queries judged; relevant: relevance >= {found['min_relevance']}"
    )


schedules_app = typer.Typer(help="Standing jobs: rerun a template job at the times a cron names.")
app.add_typer(schedules_app, name="schedules")


def _schedule_line(found: dict[str, Any]) -> str:
    state = "paused" if found["paused"] else f"next {found['next_due_at']}"
    when = f"'{found['cron']}' {found['timezone']}"
    return f"{found['id']}  job {found['job_id']}  {when}  {state}  {found['name'] or ''}"


@schedules_app.command("create")
def schedules_create(
    job_id: str,
    cron: Annotated[str, typer.Option(help='Five fields: minute hour day month weekday, e.g. "0 2 * * *".')],
    timezone: Annotated[str, typer.Option(help="IANA time zone the cron is read in.")] = "UTC",
    name: Annotated[str | None, typer.Option(help="A name to recognise it by.")] = None,
    api_url: ApiUrl = DEFAULT_API,
    api_key: ApiKey = None,
) -> None:
    """Rerun job JOB_ID at each time --cron names; prints the schedule."""
    body = {"job_id": job_id, "cron": cron, "timezone": timezone, "name": name}
    typer.echo(_schedule_line(_request("POST", f"{api_url}/v1/schedules", api_key, json=body)))


@schedules_app.command("list")
def schedules_list(api_url: ApiUrl = DEFAULT_API, api_key: ApiKey = None) -> None:
    """Schedules, newest first: id, template job, cron, next due time, name."""
    for found in _request("GET", f"{api_url}/v1/schedules", api_key)["schedules"]:
        typer.echo(_schedule_line(found))


@schedules_app.command("show")
def schedules_show(schedule_id: str, api_url: ApiUrl = DEFAULT_API, api_key: ApiKey = None) -> None:
    """A schedule and its latest runs: due time, the job submitted and its status, or the error."""
    found = _request("GET", f"{api_url}/v1/schedules/{schedule_id}", api_key)
    typer.echo(_schedule_line(found))
    for run in found["runs"]:
        outcome = f"job {run['job_id']} {run['status']}" if run["job_id"] else "no job"
        typer.echo(f"  {run['due_at']}  {outcome}{'  ' + run['error'] if run['error'] else ''}")


@schedules_app.command("delete")
def schedules_delete(schedule_id: str, api_url: ApiUrl = DEFAULT_API, api_key: ApiKey = None) -> None:
    """Delete a schedule (the jobs its runs submitted stay)."""
    _request("DELETE", f"{api_url}/v1/schedules/{schedule_id}", api_key)
    typer.echo(f"schedule {schedule_id} deleted")


@app.command("build-test-model")
def build_test_model(
    path: Path,
    shape: Annotated[str, typer.Option(help="tiny | base | v2-m3 (XLM-R) | bert-tiny (BERT)")] = "tiny",
) -> None:
    """Write a random-weight cross-encoder (trained tokenizer) for offline tests; scores mean nothing."""
    from worker.engine.random_model import build_random_reranker

    build_random_reranker(path, shape)
    typer.echo(f"random-weight {shape} reranker written to {path}")


app.add_typer(keys_app, name="keys")

if __name__ == "__main__":
    app()
