"""`rejuve users add | list | remove`: people's accounts (JupyterHub logins)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from backend.cli.app import runtime
from backend.cli.output import console

users_app = typer.Typer(no_args_is_help=True, help="People's accounts (JupyterHub logins).")


@users_app.command("add")
def users_add(
    name: str,
    role: Annotated[
        list[str],
        typer.Option(help="member, coach, researcher, steward, admin or auditor (repeatable)"),
    ],
    password_stdin: Annotated[bool, typer.Option(help="read the password from stdin")] = False,
) -> None:
    """Create an account (the password is stored as a bcrypt hash). Off a terminal, pipe
    the password in: `printf '%s\\n' "$PW" | rejuve users add NAME --role R --password-stdin`."""
    from backend.exceptions import UserError
    from backend.identity import hub_auth

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif not sys.stdin.isatty():
        # typer's prompt would read EOF from a pipe and end in a traceback.
        raise UserError("no terminal to ask for the password: pipe it in with --password-stdin")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    ctx = runtime()
    hub_auth.add_user(ctx.hub.user_store, name, password, role)
    console.print(f"added {name} ({', '.join(role)}); log in at {ctx.hub.url}")


@users_app.command("list")
def users_list() -> None:
    """List accounts and their roles."""
    from rich.table import Table

    from backend.identity import hub_auth

    table = Table(title="Accounts", title_justify="left")
    table.add_column("user")
    table.add_column("roles")
    for u in hub_auth.list_users(runtime().hub.user_store):
        table.add_row(u.name, ", ".join(sorted(u.groups)))
    console.print(table)


@users_app.command("remove")
def users_remove(name: str) -> None:
    """Remove an account and everything held under its name (coach assignments, study
    memberships, the link to a member record, personal policy rules), audited. The Hub
    refuses its sessions and tokens within a few seconds (README). The notebook account
    and its home (the person's notebooks) are deleted too."""
    import os

    from backend.cli.operator import operator_audit
    from backend.exceptions import UserError
    from backend.governance import departures
    from backend.governance.policy import Policy
    from backend.identity import accounts, hub_auth

    ctx = runtime()
    with operator_audit(ctx, "users.remove", f"users/{name}", {"user": name}) as params:
        # Rights first: a name whose account is already gone may still hold some.
        with ctx.db.connect("backend") as conn:
            revoked = departures.revoke_rights(conn, name)
        policy = Policy.open(ctx.db.sqlalchemy_url("backend"), reload_seconds=0)
        try:
            revoked.rules = departures.revoke_rules(policy, name)
        finally:
            policy.close()
        params.update(revoked.summary())
        try:
            hub_auth.remove_user(ctx.hub.user_store, name)
            params["account"] = True
        except UserError:
            if revoked.summary() == departures.Revoked().summary():
                raise
            params["account"] = False
    home = accounts.remove(name) if os.geteuid() == 0 else False
    console.print(f"removed {name}" + (" and their notebook account" if home else ""))
    held = revoked.summary()
    if held != departures.Revoked().summary():
        console.print(
            f"revoked: {held['assignments']} coach assignment(s),"
            f" {len(revoked.studies)} study membership(s), {held['member_links']} member"
            f" link(s), {len(revoked.rules)} policy rule(s)"
        )
