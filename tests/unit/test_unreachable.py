"""A worker (re)started while PostgreSQL is down waits for it: every answer of a server that cannot
take connections for now counts as unreachable (the chaos benchmark caught a worker that gave up on
"not yet accepting connections", the line PostgreSQL sends while it replays its log after an
immediate shutdown); a server that answers and refuses us does not."""

import sqlite3

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from worker.errors import is_connection_error, is_unreachable

REFUSED = 'connection failed: connection to server at "127.0.0.1", port 5 failed: '


@pytest.mark.parametrize(
    "line",
    [
        "Connection refused",
        "FATAL:  the database system is starting up",
        "FATAL:  the database system is not yet accepting connections",
        "FATAL:  the database system is not accepting connections",
        "FATAL:  the database system is shutting down",
        "FATAL:  the database system is in recovery mode",
        "FATAL:  sorry, too many clients already",
    ],
)
def test_a_server_that_cannot_take_connections_yet_is_waited_for(line: str) -> None:
    assert is_unreachable(psycopg.OperationalError(REFUSED + line))


@pytest.mark.parametrize(
    "line",
    ['FATAL:  database "nope" does not exist', 'FATAL:  role "nobody" does not exist'],
)
def test_a_server_that_refuses_us_is_a_configuration_to_fix(line: str) -> None:
    assert not is_unreachable(psycopg.OperationalError(REFUSED + line))


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        ("database is locked", True),
        ("unable to open database file", True),
        ("database or disk is full", True),
        ("table planned_pairs already exists", False),
        ("no such table: jobs", False),
    ],
)
def test_sqlite_retries_a_busy_file_not_a_faulty_statement(message: str, transient: bool) -> None:
    """A statement's fault retried as an outage is retried forever."""
    error = OperationalError("SELECT 1", {}, sqlite3.OperationalError(message))
    assert is_connection_error(error) is transient
