"""`rejuve sources add | revoke`: ingestion sources and their API keys."""

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
) -> None:
    """Register a source; prints its API key once (it is stored hashed)."""
    from backend.api.api_keys import register

    with runtime().db.connect("owner") as conn:
        key = register(conn, name, rotate=rotate)
    console.print(f"API key for [bold]{name}[/] (shown once, store it now):")
    console.print(key, soft_wrap=True, highlight=False)


@sources_app.command("revoke")
def sources_revoke(name: str) -> None:
    """Revoke a source's API key: its requests are refused from now on."""
    from backend.api.api_keys import revoke
    from backend.exceptions import UserError

    with runtime().db.connect("owner") as conn:
        if not revoke(conn, name):
            raise UserError(f"no active source '{name}'")
    console.print(f"revoked {name}")
