"""`rejuve members add | zone | list`: the member registry (enrolment and demographics)."""

from __future__ import annotations

from typing import Annotated

import typer

from backend.cli.app import runtime
from backend.cli.output import console, print_json

members_app = typer.Typer(no_args_is_help=True, help="The member registry.")


@members_app.command("add")
def members_add(
    member: Annotated[
        str | None, typer.Argument(help="the member's id (a new one if left out)")
    ] = None,
    birth_year: Annotated[int | None, typer.Option(help="year of birth")] = None,
    sex: Annotated[str | None, typer.Option(help="female, male, other or unknown")] = None,
    hub_user: Annotated[str | None, typer.Option(help="the member's Hub account")] = None,
    time_zone: Annotated[
        str | None, typer.Option(help="IANA time zone, e.g. Europe/Berlin (for local times)")
    ] = None,
) -> None:
    """Enrol a member in this region, or update the demographics of an enrolled one."""
    import uuid

    from backend.exceptions import UserError
    from backend.governance.members import Enrolment, enrol

    try:
        member_id = uuid.UUID(member) if member else uuid.uuid4()
    except ValueError:
        raise UserError(f"not a member id (UUID): {member!r}") from None
    ctx = runtime()
    with ctx.db.connect("backend") as conn:
        new = enrol(
            conn,
            Enrolment(member_id, ctx.settings.region, birth_year, sex, hub_user, time_zone),
        )
    console.print(f"{'enrolled' if new else 'updated'} {member_id}")


@members_app.command("zone")
def members_zone(
    member: Annotated[str, typer.Argument(help="the member's id")],
    zone: Annotated[str, typer.Argument(help="IANA time zone, e.g. Europe/Berlin")],
) -> None:
    """Set the time zone a member's local-time files (Fitbit) are read in."""
    import uuid

    from backend.exceptions import UserError
    from backend.governance.members import set_time_zone

    try:
        member_id = uuid.UUID(member)
    except ValueError:
        raise UserError(f"not a member id (UUID): {member!r}") from None
    ctx = runtime()
    with ctx.db.connect("backend") as conn:
        if not set_time_zone(conn, member_id, zone):
            raise UserError(f"member {member_id} is not enrolled")
    console.print(f"{member_id}: time zone {zone}")


@members_app.command("list")
def members_list(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The members enrolled in this region: id, Hub account, year of birth, sex, enrolment."""
    from rich.table import Table

    from backend.governance.members import listing

    ctx = runtime()
    with ctx.db.connect("backend") as conn:
        found = listing(conn, ctx.settings.region)
    if as_json:
        print_json([m.__dict__ for m in found])
        return
    table = Table(title=f"Members in {ctx.settings.region}", title_justify="left")
    for col in ("member", "hub user", "birth year", "sex", "time zone", "enrolled at"):
        table.add_column(col)
    for m in found:
        table.add_row(
            str(m.member_id),
            m.hub_user or "",
            str(m.birth_year or ""),
            m.sex or "",
            m.time_zone or "",
            m.enrolled_at.isoformat(timespec="seconds"),
        )
    console.print(table)
