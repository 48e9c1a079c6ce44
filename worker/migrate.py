"""Schema upgrades through Alembic, with the scripts shipped inside the package (migrations/), and
the check that API and worker make before they use a database: is its schema the newest?"""

import logging
import time
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

import migrations
from worker.db import get_engine, shown
from worker.errors import SchemaMissing, is_unreachable

log = logging.getLogger(__name__)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Bring the database at `url` to the newest schema (idempotent)."""
    command.upgrade(alembic_config(url), "head")


@lru_cache
def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


_READY: set[str] = set()  # databases found at the newest schema by this process (checked once)


def require_schema(url: str) -> None:
    """Raise SchemaMissing, naming the database, unless it is at the newest schema: a server started
    before `rerankq migrate` says so instead of failing on every request."""
    if url in _READY:
        return
    with get_engine(url).connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        raise SchemaMissing(f"schema not migrated: run `rerankq migrate` (database {shown(url)})")
    if current != _head():
        raise SchemaMissing(
            f"schema {current} is not the newest ({_head()}): run `rerankq migrate` (database {shown(url)})"
        )
    _READY.add(url)


def wait_for_schema(url: str, give_up_after: float) -> None:
    """require_schema, waiting out a database that is unreachable right now (a worker restarted
    while PostgreSQL is down waits for it rather than exiting) for up to `give_up_after` seconds,
    trying every 2 s. A database that answers and refuses (no schema, no such database or role)
    is raised at once."""
    give_up = time.monotonic() + give_up_after
    while True:
        try:
            return require_schema(url)
        except SQLAlchemyError as error:
            if not is_unreachable(error) or time.monotonic() > give_up:
                raise
            first = str(getattr(error, "orig", error)).strip().splitlines()[0]
            log.warning("database %s unreachable, waiting for it: %s", shown(url), first)
            time.sleep(2)
