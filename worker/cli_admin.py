"""`rerankq cache` and `rerankq schedules`: the score cache and standing jobs, through the API."""

import json
from typing import Annotated, Any

import typer

from worker import cli_http
from worker.cli_http import DEFAULT_API, ApiKey, ApiUrl

cache_app = typer.Typer(help="The score cache: its size, and pruning it.", no_args_is_help=True)
schedules_app = typer.Typer(help="Standing jobs: rerun a template job at the times a cron names.")


@cache_app.command("size")
def cache_size(api_url: ApiUrl = DEFAULT_API, api_key: ApiKey = None) -> None:
    """Print how many pairs' scores the cache keeps, and the oldest and newest entry's time."""
    typer.echo(json.dumps(cli_http.request("GET", f"{api_url}/v1/cache", api_key), indent=2))


@cache_app.command("prune")
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
    pruned = cli_http.request("DELETE", f"{api_url}/v1/cache", api_key, params=params)
    typer.echo(f"{pruned['deleted']} cache entries deleted")


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
    typer.echo(_schedule_line(cli_http.request("POST", f"{api_url}/v1/schedules", api_key, json=body)))


@schedules_app.command("list")
def schedules_list(api_url: ApiUrl = DEFAULT_API, api_key: ApiKey = None) -> None:
    """Schedules, newest first: id, template job, cron, next due time, name."""
    for found in cli_http.request("GET", f"{api_url}/v1/schedules", api_key)["schedules"]:
        typer.echo(_schedule_line(found))


@schedules_app.command("show")
def schedules_show(schedule_id: str, api_url: ApiUrl = DEFAULT_API, api_key: ApiKey = None) -> None:
    """A schedule and its latest runs: due time, the job submitted and its status, or the error."""
    found = cli_http.request("GET", f"{api_url}/v1/schedules/{schedule_id}", api_key)
    typer.echo(_schedule_line(found))
    for run in found["runs"]:
        outcome = f"job {run['job_id']} {run['status']}" if run["job_id"] else "no job"
        typer.echo(f"  {run['due_at']}  {outcome}{'  ' + run['error'] if run['error'] else ''}")


@schedules_app.command("delete")
def schedules_delete(schedule_id: str, api_url: ApiUrl = DEFAULT_API, api_key: ApiKey = None) -> None:
    """Delete a schedule (the jobs its runs submitted stay)."""
    cli_http.request("DELETE", f"{api_url}/v1/schedules/{schedule_id}", api_key)
    typer.echo(f"schedule {schedule_id} deleted")
