"""What every `rerankq` command shares: one plain line for what a person can fix, exit codes (a
job's outcome among them), the environment's Settings."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from worker.config import Settings, get_settings
from worker.db import database_problem
from worker.errors import RerankError

# Exit codes (README, CLI): 0 done; 1 the API refused the request; 2 bad input, configuration,
# or a service that cannot be reached; a job that ran but did not complete: 3 failed, 4 cancelled.
REFUSED, UNUSABLE = 1, 2
JOB_EXIT = {"completed": 0, "failed": 3, "cancelled": 4}


def fail(message: str, code: int = UNUSABLE) -> NoReturn:
    """One plain line on stderr and a non-zero exit: what a person needs, no traceback."""
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    typer.echo(f"rerankq: {first}", err=True)
    raise typer.Exit(code)


def outcome(job: dict[str, Any]) -> None:
    """Say how a job ended; exit non-zero unless it completed (3 failed, 4 cancelled)."""
    error = f": {job['error']}" if job.get("error") else ""
    typer.echo(f"job {job['id']} {job['status']}{error}", err=True)
    if code := JOB_EXIT.get(job["status"], 0):
        raise typer.Exit(code)


def read_settings() -> Settings:
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
