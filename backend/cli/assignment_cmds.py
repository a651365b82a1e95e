"""`rejuve assignments add | list | revoke`: which coach sees which member.

Changes are audited as the operator (`operator:<login>`), like `rejuve policy`; a coach
sees an assigned member's data only as far as the member's coaching consent allows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from backend.cli.app import runtime
from backend.cli.output import console, print_json

if TYPE_CHECKING:
    import uuid

assignments_app = typer.Typer(
    no_args_is_help=True, help="Coach assignments: which coach sees which member."
)

Coach = Annotated[str, typer.Argument(help="the coach's Hub user")]
Member = Annotated[str, typer.Argument(help="the member's id (UUID)")]


def _member_id(value: str) -> uuid.UUID:
    import uuid

    from backend.exceptions import UserError

    try:
        return uuid.UUID(value)
    except ValueError:
        raise UserError(f"not a member id (UUID): {value!r}") from None


def _change(coach: str, member: str, *, assign: bool) -> None:
    from backend.cli.operator import operator_audit
    from backend.exceptions import UserError
    from backend.governance import assignments as asg

    member_id = _member_id(member)
    ctx = runtime()
    verb = "assign" if assign else "revoke"
    params: dict[str, object] = {"coach": coach, "member": str(member_id)}
    with (
        operator_audit(ctx, f"assignments.{verb}", "assignments", params),
        ctx.db.connect("backend") as conn,
    ):
        if not asg.member_exists(conn, member_id):
            raise UserError(f"no member {member_id} is enrolled", "see `rejuve members list`")
        changed = (
            asg.assign(conn, coach, member_id) if assign else asg.unassign(conn, coach, member_id)
        )
        params["changed"] = changed
    if changed:
        console.print(f"{'assigned' if assign else 'revoked'}: {member_id} to coach {coach}")
    else:
        state = "already assigned" if assign else "not assigned"
        console.print(f"no change: {member_id} was {state} to coach {coach}")


@assignments_app.command("add")
def assignments_add(coach: Coach, member: Member) -> None:
    """Assign MEMBER to COACH (audited): the coach then sees what the member consents to."""
    _change(coach, member, assign=True)


@assignments_app.command("revoke")
def assignments_revoke(coach: Coach, member: Member) -> None:
    """End an assignment (audited): the coach's next request no longer sees the member."""
    _change(coach, member, assign=False)


@assignments_app.command("list")
def assignments_list(
    coach: Annotated[str | None, typer.Option(help="one coach's members only")] = None,
    include_revoked: Annotated[bool, typer.Option(help="ended assignments too")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Which coach has which member (current assignments unless --include-revoked)."""
    from rich.table import Table

    from backend.governance import assignments as asg

    with runtime().db.connect("backend") as conn:
        found = asg.listing(conn, coach, current_only=not include_revoked)
    if as_json:
        print_json([a.__dict__ for a in found])
        return
    table = Table(title="Coach assignments", title_justify="left")
    for col in ("coach", "member", "assigned at", "revoked at"):
        table.add_column(col)
    for a in found:
        revoked = a.revoked_at.isoformat(timespec="seconds") if a.revoked_at else ""
        table.add_row(
            a.coach, str(a.member_id), a.assigned_at.isoformat(timespec="seconds"), revoked
        )
    console.print(table)
