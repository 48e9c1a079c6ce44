"""`rerankq keys`: create, list and revoke API keys, straight on the database of
RERANK_DATABASE_URL (whoever can run this can read the database anyway)."""

from typing import Annotated

import typer

from worker import keys
from worker.cli_support import plainly, read_settings
from worker.db import session_scope

keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)


@keys_app.command("create")
def create(
    tenant: Annotated[str, typer.Option(help="The tenant whose jobs and collections the key reaches.")],
    admin: Annotated[
        bool, typer.Option(help="An admin key sees every tenant's objects and /metrics.")
    ] = False,
    if_none: Annotated[
        bool,
        typer.Option("--if-none", help="Only if no admin key exists yet (a first start); else no output."),
    ] = False,
) -> None:
    """Create a key; the key itself is printed once, alone on the last line, and never stored."""
    settings = read_settings()
    with plainly(settings), session_scope(settings.database_url) as session:
        if if_none and keys.has_admin_key(session):
            typer.echo("an admin key exists already; none created", err=True)
            return
        info, key = keys.create_key(session, tenant, admin)
    role = "admin key" if info.admin else "key"
    typer.echo(f"{role} {info.id} created for tenant {info.tenant!r}; it is shown only now:")
    typer.echo(key)


@keys_app.command("list")
def list_keys() -> None:
    """Every key: id, tenant, admin or not, created, revoked (never the key itself)."""
    settings = read_settings()
    with plainly(settings), session_scope(settings.database_url) as session:
        found = keys.list_keys(session)
    for info in found:
        revoked = f"revoked {info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else "active"
        role = "admin" if info.admin else "-"
        typer.echo(f"{info.id}  {info.tenant:<20}  {role:<5}  {info.created_at:%Y-%m-%d %H:%M}  {revoked}")


@keys_app.command("revoke")
def revoke(key_id: str) -> None:
    """Revoke a key by its id (`rerankq keys list`): the next request that sends it is a 401."""
    settings = read_settings()
    with plainly(settings), session_scope(settings.database_url) as session:
        info = keys.revoke_key(session, key_id)
    typer.echo(f"key {info.id} of tenant {info.tenant!r} revoked")
