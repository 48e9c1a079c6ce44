"""The `rerankq` commands that work through the API: submit and follow jobs, fetch their results,
upload collections and judgements, evaluate. The job options here are `rerankq run`'s too.
worker.cli registers them, in the order its help lists them."""

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import ValidationError

from worker import cli_http
from worker.cli_http import DEFAULT_API, NDJSON, ApiKey, ApiUrl
from worker.cli_support import fail, outcome
from worker.errors import RerankError
from worker.export import check_output
from worker.spec import JobOptions

OUTPUT_HELP = "out.jsonl, out.csv or out.parquet (any case); - writes JSONL to stdout"
ExistingFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False)]
Threshold = Annotated[float | None, typer.Option(help="Relevant when score > threshold (default 0.5).")]
TopK = Annotated[int | None, typer.Option(help="Results kept per query.")]
MaxLength = Annotated[int | None, typer.Option(help="Tokens per pair (default 1024).")]
Chunking = Annotated[
    bool, typer.Option(help="Read long documents as overlapping windows (--no-chunking: truncate them).")
]
CleanHtml = Annotated[bool, typer.Option(help="Strip HTML tags, comments and control characters first.")]


def job_options(
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


def checked(output: Path) -> None:
    """Refuse an output file that cannot be written before any work is done."""
    try:
        check_output(output)
    except RerankError as error:
        fail(f"-o {output}: {error.message}")


def _submitted(job: dict[str, Any], api_url: str, api_key: str | None, wait: bool) -> None:
    """Print a new job's id; with --wait, follow it to its end and exit as it ended."""
    typer.echo(job["id"])
    if wait:
        outcome(cli_http.follow(api_url, job["id"], api_key))


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
    options = job_options(threshold, top_k, max_length, chunking, clean_html)
    params = {
        "options": options.model_dump_json(exclude_unset=True),
        **({"priority": priority} if priority else {}),
    }
    content = cli_http.blocks(file)
    job = cli_http.request(
        "POST", f"{api_url}/v1/jobs", api_key, content=content, headers=NDJSON, params=params
    )
    _submitted(job, api_url, api_key, wait)


def upload_collection(
    file: ExistingFile,
    name: Annotated[str | None, typer.Option(help="A name to recognise it by.")] = None,
    api_url: ApiUrl = DEFAULT_API,
    api_key: ApiKey = None,
) -> None:
    """Upload a knowledge base (JSONL: {"id", "text", "metadata"?} per line), streamed; prints the
    collection as JSON (its id, counts and the lines that were rejected)."""
    params = {"name": name} if name else {}
    url, content = f"{api_url}/v1/collections", cli_http.blocks(file)
    collection = cli_http.request("POST", url, api_key, content=content, headers=NDJSON, params=params)
    typer.echo(json.dumps(collection, indent=2))


def update_collection(
    collection_id: str, file: ExistingFile, api_url: ApiUrl = DEFAULT_API, api_key: ApiKey = None
) -> None:
    """Change a collection in place (JSONL: {"id", "text", "metadata"?} adds or replaces a
    document, {"id", "deleted": true} deletes one), streamed; prints what changed, the new version
    and the lines that were rejected, as JSON."""
    url, content = f"{api_url}/v1/collections/{collection_id}", cli_http.blocks(file)
    changed = cli_http.request("PATCH", url, api_key, content=content, headers=NDJSON)
    typer.echo(json.dumps(changed, indent=2))


def status(job_id: str, api_url: ApiUrl = DEFAULT_API, api_key: ApiKey = None) -> None:
    """Print a job's status and progress as JSON."""
    typer.echo(json.dumps(cli_http.request("GET", f"{api_url}/v1/jobs/{job_id}", api_key), indent=2))


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
    for job in cli_http.request("GET", f"{api_url}/v1/jobs", api_key, params=params)["jobs"]:
        progress = job["progress"]
        typer.echo(
            f"{job['id']}  {job['status']:<9}  {progress['done']}/{progress['total']}  {job['created_at']}"
        )


def cancel(job_id: str, api_url: ApiUrl = DEFAULT_API, api_key: ApiKey = None) -> None:
    """Stop a job; what was scored stays, ranked, as its results."""
    job = cli_http.request("POST", f"{api_url}/v1/jobs/{job_id}/cancel", api_key)
    typer.echo(f"job {job['id']} {job['status']}: {job['progress']['done']} pairs scored, kept")


def delete(job_id: str, api_url: ApiUrl = DEFAULT_API, api_key: ApiKey = None) -> None:
    """Delete a finished job with its results (cancel a running one first)."""
    cli_http.request("DELETE", f"{api_url}/v1/jobs/{job_id}", api_key)
    typer.echo(f"job {job_id} deleted")


def collections(api_url: ApiUrl = DEFAULT_API, api_key: ApiKey = None) -> None:
    """List collections, newest first: id, documents, rejected lines, name."""
    for found in cli_http.request("GET", f"{api_url}/v1/collections", api_key)["collections"]:
        counts = f"{found['documents']} documents  {found['error_count']} rejected"
        typer.echo(f"{found['id']}  {counts}  {found['name'] or ''}")


def results(
    job_id: str,
    output: Annotated[Path, typer.Option("--output", "-o", help=OUTPUT_HELP)],
    api_url: ApiUrl = DEFAULT_API,
    api_key: ApiKey = None,
) -> None:
    """Download every ranked result of a finished job, streamed: memory stays flat for any size."""
    from worker.export import write_results

    checked(output)
    url = f"{api_url}/v1/jobs/{job_id}/results.jsonl"
    try:
        with httpx.stream("GET", url, headers=cli_http.auth(api_key), timeout=60) as response:
            if response.status_code >= 400:
                response.read()
                cli_http.refused(response)
            count = write_results((json.loads(line) for line in response.iter_lines() if line), output)
    except httpx.TransportError as error:
        cli_http.unreachable(url, error)
    typer.echo(f"{count} results written to {output}", err=True)


def rerun(
    job_id: str,
    api_url: ApiUrl = DEFAULT_API,
    api_key: ApiKey = None,
    wait: Annotated[bool, typer.Option(help="Show progress until the new job finishes.")] = False,
) -> None:
    """Submit a job again as a new job (same queries, documents or collection, options,
    judgements); prints the new job's id."""
    job = cli_http.request("POST", f"{api_url}/v1/jobs/{job_id}/rerun", api_key)
    _submitted(job, api_url, api_key, wait)


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
    url, content = f"{api_url}/v1/jobs/{job_id}/qrels", cli_http.blocks(file)
    found = cli_http.request("POST", url, api_key, content=content, headers=headers)
    typer.echo(f"job {job_id}: {found['judgements']} judgements over {found['queries']} queries")


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
    found = cli_http.request("GET", f"{api_url}/v1/jobs/{job_id}/evaluation", api_key, params=params)
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
