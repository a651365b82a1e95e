"""`rejuve sources add | enrol | revoke`: ingestion sources and their API keys."""

from __future__ import annotations

from typing import Annotated

import typer

from backend.cli.app import runtime
from backend.cli.output import console

sources_app = typer.Typer(no_args_is_help=True, help="Ingestion sources and their API keys.")


@sources_app.command("add")
def sources_add(
    name: Annotated[str, typer.Argument(help="source name, e.g. acme-watch")],
    rotate: Annotated[bool, typer.Option(help="replace the key of an existing source")] = False,
    member: Annotated[
        list[str] | None, typer.Option(help="a member it may write for (UUID, repeatable)")
    ] = None,
) -> None:
    """Register a source; prints its API key once (it is stored hashed). It may write only
    for the members it is enrolled for (--member here, or `rejuve sources enrol`)."""
    from backend.cli.data_cmds import sources_add as add

    add(runtime(), name, rotate, member or [])


@sources_app.command("enrol")
def sources_enrol(
    name: Annotated[str, typer.Argument(help="source name")],
    member: Annotated[list[str], typer.Option(help="member UUID (repeatable)")],
    remove: Annotated[bool, typer.Option(help="withdraw these enrolments instead")] = False,
) -> None:
    """Enrol a source (device, app) for members: its key may write their data only."""
    from backend.cli.data_cmds import sources_enrol as enrol

    enrol(runtime(), name, member, remove)


@sources_app.command("revoke")
def sources_revoke(name: str) -> None:
    """Revoke a source's API key: its requests are refused from now on."""
    from backend.api.api_keys import revoke
    from backend.exceptions import UserError

    with runtime().db.connect("owner") as conn:
        if not revoke(conn, name):
            raise UserError(f"no active source '{name}'")
    console.print(f"revoked {name}")
