"""`rejuve policy list | grant | revoke`: the platform operator's view of the Casbin rules.

The operator works on the host, through the backend's database role; every change is
written to the audit trail as the operator (`operator:<login>`), like an admin's change
over the API. Running backends reload at once (the database notifies them of each change)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from backend.cli.output import console, print_json

policy_app = typer.Typer(no_args_is_help=True, help="Authorisation rules: who may do what.")

Region = Annotated[str, typer.Option(help="a region, or * for every region")]


@policy_app.command("list")
def policy_list(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every rule in force (what is not listed is refused)."""
    from backend.cli.app import context
    from backend.governance.policy import Policy

    policy = Policy.open(context().db.sqlalchemy_url("backend"), listen=False, reload_seconds=0)
    rules = sorted(policy.rules())
    policy.close()
    if as_json:
        print_json(
            [dict(zip(("subject", "region", "resource", "action"), r, strict=True)) for r in rules]
        )
        return
    table = Table(title="Policy", title_justify="left")
    for col in ("subject", "region", "resource", "action"):
        table.add_column(col)
    for r in rules:
        table.add_row(*r)
    console.print(table)


def _change(subject: str, resource: str, action: str, region: str, *, granted: bool) -> None:
    from backend.cli.app import context
    from backend.cli.operator import operator_audit
    from backend.governance.policy import Policy, Rule

    verb = "grant" if granted else "revoke"
    rule = Rule(subject, region, resource, action)
    ctx = context()
    policy = Policy.open(
        ctx.db.sqlalchemy_url("backend"),
        regions=(ctx.settings.region,),
        listen=False,
        reload_seconds=0,
    )
    try:
        with operator_audit(ctx, f"policy.{verb}", "policy", dict(rule.__dict__)) as params:
            params["changed"] = changed = policy.change(rule, granted=granted)
    finally:
        policy.close()
    what = f"{subject} {action} {resource} in {region}"
    if changed:
        console.print(f"{'granted' if granted else 'revoked'}: {what}")
    else:
        console.print(f"no change: {what} was {'already' if granted else 'not'} granted")


def _command(granted: bool) -> None:
    verb = "grant" if granted else "revoke"

    def command(
        subject: Annotated[
            str, typer.Argument(help="user:NAME (a Hub user) or role:ROLE (e.g. role:coach)")
        ],
        resource: Annotated[str, typer.Argument(help="e.g. studies/:study/dataset")],
        action: Annotated[str, typer.Argument(help="read, write or *")],
        region: Region = "*",
    ) -> None:
        _change(subject, resource, action, region, granted=granted)

    help_text = (
        "Allow SUBJECT to ACTION on RESOURCE (audited)."
        if granted
        else "Remove a rule (audited); running backends follow within a second."
    )
    policy_app.command(verb, help=help_text)(command)


_command(granted=True)
_command(granted=False)
