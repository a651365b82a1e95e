"""`rejuve audit verify`: the tamper-evident audit trail."""

from __future__ import annotations

from typing import Annotated

import typer

from backend.cli.app import runtime
from backend.cli.output import console, err, print_json

audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit trail.")


@audit_app.command("verify")
def audit_verify(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Recompute the hash chain; name every edited, deleted or reordered record."""
    from backend.governance import audit

    with console.status("verifying the audit chain"), runtime().db.connect("backend") as conn:
        result = audit.verify(conn)
    if as_json:
        print_json(
            {
                "ok": result.ok,
                "checked": result.checked,
                "problems": [{"seq": s, "problem": p} for s, p in result.problems],
            }
        )
    elif result.ok:
        console.print(f"[green]audit chain intact[/]: {result.checked:,} records")
    else:
        for seq, problem in result.problems:
            err.print(f"[red]record {seq}[/]: {problem}")
    if not result.ok:
        raise typer.Exit(1)
