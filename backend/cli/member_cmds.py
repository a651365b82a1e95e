"""`rejuve members`: the member registry (enrolment and demographics)."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer

from backend.cli.output import console

members_app = typer.Typer(no_args_is_help=True, help="The member registry.")


@members_app.command("add")
def members_add(
    member: Annotated[
        str | None, typer.Argument(help="the member's id (a new one if left out)")
    ] = None,
    birth_year: Annotated[int | None, typer.Option(help="year of birth")] = None,
    sex: Annotated[str | None, typer.Option(help="female, male, other or unknown")] = None,
    hub_user: Annotated[str | None, typer.Option(help="the member's Hub account")] = None,
) -> None:
    """Enrol a member in this region, or update the demographics of an enrolled one."""
    from backend.cli.main import _ctx
    from backend.exceptions import UserError
    from backend.governance.members import Enrolment, enrol

    try:
        member_id = uuid.UUID(member) if member else uuid.uuid4()
    except ValueError:
        raise UserError(f"not a member id (UUID): {member!r}") from None
    ctx = _ctx()
    with ctx.db.connect("backend") as conn:
        new = enrol(conn, Enrolment(member_id, ctx.settings.region, birth_year, sex, hub_user))
    console.print(f"{'enrolled' if new else 'updated'} {member_id}")
