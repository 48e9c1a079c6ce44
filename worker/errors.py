"""Domain errors, each mapped once to an HTTP status in api/app.py and to a message in the CLI."""

import sqlite3

import kombu.exceptions
import psycopg
import redis
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

# What an unreachable database raises (SQLAlchemy's wrappers and the driver's own errors).
CONNECTION_ERRORS = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


class RerankError(Exception):
    """Base of the errors a client can cause; `field` names the input at fault, if any."""

    status_code = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def headers(self) -> dict[str, str]:
        """HTTP headers the answer carries besides the body (none by default)."""
        return {}


class Unauthenticated(RerankError):
    """No API key, or one that is unknown or revoked: say how to send one."""

    status_code = 401

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="rerankq"'}


class Forbidden(RerankError):
    """A valid key asking for what only an admin key may do (never for another tenant's object:
    that is a NotFound, so a key learns nothing of what it cannot see)."""

    status_code = 403


class TooManyRequests(RerankError):
    """A tenant's quota (queued pairs, requests per minute) is spent; retry after `retry_after` s."""

    status_code = 429

    def __init__(self, message: str, retry_after: int, field: str | None = None) -> None:
        super().__init__(message, field)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class NotFound(RerankError):
    status_code = 404


class Conflict(RerankError):
    """The job is in a state that does not allow the request (e.g. cancelling a finished job)."""

    status_code = 409


class InvalidInput(RerankError):
    status_code = 422


class UnsupportedMediaType(RerankError):
    """A body of a media type the route does not read (uploads: JSONL or a multipart form)."""

    status_code = 415


class TooLarge(RerankError):
    """A body, or one line of an upload, over its size limit."""

    status_code = 413


# What an unreachable broker raises: Redis' own errors, and Celery's (kombu's) when a publish
# fails after its retries.
BROKER_ERRORS = (redis.RedisError, kombu.exceptions.OperationalError)


def is_unreachable(error: BaseException) -> bool:
    """Whether `error` says the database cannot be reached right now (refused, timed out, no such
    host yet, starting up or shutting down), as opposed to a server that answered and refused us
    (no such database or role, a wrong password): the first is waited for, the second is a
    configuration to fix. psycopg gives connection failures no SQLSTATE, so the server's own
    FATAL line tells them apart."""
    cause = getattr(error, "orig", None) or error
    if not isinstance(cause, psycopg.OperationalError):
        return False
    message = str(cause)
    return "FATAL:" not in message or any(transient in message for transient in _TRANSIENT_FATAL)


# PostgreSQL's FATAL lines while it cannot take connections for now: starting, replaying its log
# after an immediate shutdown ("not yet accepting"), a standby, stopping, or full.
_TRANSIENT_FATAL = (
    "starting up",
    "not yet accepting connections",
    "not accepting connections",
    "shutting down",
    "in recovery mode",
    "too many clients",
    "terminating",
)


# SQLite raises OperationalError for faults of a statement too ("table ... already exists", "no
# such table"): only these say the file could not be used for now. A fault retried as an outage
# retries forever: a worker's plans stalled on "already exists" for as long as it ran.
_SQLITE_TRANSIENT = (
    "database is locked",
    "unable to open database file",
    "disk i/o error",
    "database or disk is full",
)


def is_connection_error(error: BaseException) -> bool:
    """Whether `error` means the database could not be reached (a transient outage, retried), as
    opposed to a fault of the work itself."""
    if not isinstance(error, CONNECTION_ERRORS):
        return False
    cause = getattr(error, "orig", None)
    if isinstance(cause, sqlite3.OperationalError):
        return any(transient in str(cause).lower() for transient in _SQLITE_TRANSIENT)
    return True


class Unavailable(RerankError):
    """A backing service could not take the work; nothing was accepted."""

    status_code = 503


class SchemaMissing(Unavailable):
    """The database has no rerankq schema (or an older one): `rerankq migrate` has not run."""


class ModelLoadError(RerankError):
    """The reranker cannot be loaded (no such directory, no hub, no such device); one line that
    says what to set, for the CLI and the worker's log alike."""

    status_code = 503


class JobError(RerankError):
    """About one job, whose id the error body carries (`job_id`), so nothing is lost: the client
    can look the job up."""

    def __init__(self, message: str, job_id: str, field: str | None = None) -> None:
        super().__init__(message, field)
        self.job_id = job_id


class JobFailed(JobError):
    """The job a synchronous request waited on failed: nothing to answer with."""

    status_code = 500


class JobCancelled(JobError):
    """The job a synchronous request waited on was cancelled (DELETE or cancel) before it finished:
    the request conflicts with that, so a 409, not a server error."""

    status_code = 409


class WaitTimeout(JobError):
    """A synchronous request's job did not finish in time; it goes on, and its results stay
    available under its id."""

    status_code = 504
