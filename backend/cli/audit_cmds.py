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
    """Check the hash chain against the heads signed outside the database and the triggers
    that protect it; name every edited, deleted, truncated or rewritten record."""
    from backend.governance.audit_anchor import AnchorFiles, verify_all

    ctx = runtime()
    with console.status("verifying the audit chain"), ctx.db.connect("backend") as conn:
        result = verify_all(conn, AnchorFiles.in_home(ctx.layout.home), ctx.db.dbname)
    if as_json:
        print_json(
            {
                "ok": result.ok,
                "checked": result.checked,
                "anchors": result.anchors,
                "latest_anchor": result.latest.seq if result.latest else None,
                "problems": [
                    {"kind": f.kind, "seq": f.seq, "problem": f.text} for f in result.findings
                ],
                "notes": result.notes,
            }
        )
    else:
        for f in result.findings:
            where = f"record {f.seq}" if f.seq is not None else f.kind
            err.print(f"[red]{where}[/] ({f.kind}): {f.text}")
        for note in result.notes:
            console.print(f"[dim]{note}[/]")
        if result.ok:
            console.print(
                f"[green]audit chain intact[/]: {result.checked:,} records,"
                f" {result.anchors:,} signed anchors, protections in place"
            )
    if not result.ok:
        raise typer.Exit(1)
