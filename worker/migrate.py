"""Schema upgrades through Alembic, with the scripts shipped inside the package (migrations/), and
the check that API and worker make before they use a database: is its schema the newest?"""

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import migrations
from worker.db import get_engine, shown
from worker.errors import SchemaMissing


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
