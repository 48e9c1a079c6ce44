"""The SQLAlchemy engine and session factory (one per process and URL) and the declarative Base."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import CursorResult, Engine, Result, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker


class Base(DeclarativeBase):
    """Base of every rerankq table."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a worker writes; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def shown(url: str) -> str:
    """A database URL fit for a message: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # an unparsable URL is shown as given: it has no password to hide
        return url


def database_problem(url: str, error: SQLAlchemyError) -> str:
    """A database error as one line naming the database: no such database, wrong password,
    unreachable host, unknown driver."""
    cause = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return f"cannot use the database at {shown(url)}: {lines[0] if lines else type(cause).__name__}"


@lru_cache
def get_engine(url: str) -> Engine:
    """One pooled engine per database URL and process."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


@lru_cache
def session_factory(url: str) -> sessionmaker[Session]:
    """Sessions that keep loaded rows readable after commit (results are returned after writes)."""
    return sessionmaker(get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def rows_affected(result: Result[Any]) -> int:
    """Rows an INSERT, UPDATE or DELETE statement wrote (a cursor's rowcount)."""
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def drop_scratch(session: Session, table: str) -> None:
    """Drop a plan's or a finalize's temporary table if it is there. SQLite's driver runs DDL
    outside a transaction when none is open, so one that failed after its CREATE could leave the
    table on the pooled connection: dropped before each CREATE too."""
    session.execute(text(f"DROP TABLE IF EXISTS {table}"))


def on_postgres(session: Session) -> bool:
    """Whether the session speaks PostgreSQL (else SQLite): for the statements only one of them has."""
    return session.get_bind().dialect.name == "postgresql"
