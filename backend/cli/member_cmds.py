"""`rejuve members add | zone | list`: the member registry (enrolment and demographics)."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer

from backend.cli.app import runtime
from backend.cli.output import console, err, print_json

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
    from backend.governance.members import Enrolment, enrol

    member_id = _member_id(member) if member else uuid.uuid4()
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
    from backend.exceptions import UserError
    from backend.governance.members import set_time_zone

    member_id = _member_id(member)
    ctx = runtime()
    with ctx.db.connect("backend") as conn:
        if not set_time_zone(conn, member_id, zone):
            raise UserError(f"member {member_id} is not enrolled")
    console.print(f"{member_id}: time zone {zone}")


@members_app.command("list")
def members_list(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, oldest first")] = 10_000,
) -> None:
    """The members enrolled in this region: id, Hub account, year of birth, sex, enrolment."""
    from rich.table import Table

    from backend.governance.members import count, listing

    ctx = runtime()
    with ctx.db.connect("backend") as conn:
        found = listing(conn, ctx.settings.region, limit)
        total = count(conn, ctx.settings.region) if len(found) == limit else len(found)
    if total > len(found):
        # On stderr: the JSON on stdout stays the list itself.
        err.print(
            f"showing the first {len(found):,} of {total:,} members (oldest enrolment first);"
            " --limit shows more"
        )
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


Identifiers = Annotated[
    list[str],
    typer.Option(
        "--identifier",
        "-i",
        help="SYSTEM|VALUE, as in FHIR Patient.identifier (repeatable)",
    ),
]


def _member_id(member: str) -> uuid.UUID:
    from backend.exceptions import UserError

    try:
        return uuid.UUID(member)
    except ValueError:
        raise UserError(f"not a member id (UUID): {member!r}") from None


def _change_identifiers(member: str, identifier: list[str], action: str) -> int:
    """Link or unlink (`action`), audited as the operator with the identifier systems,
    never the values; returns how many changed."""
    from backend.cli.operator import operator_audit
    from backend.identity.identifiers import Identifier, link, unlink

    ctx = runtime()
    given = [Identifier.parse(i) for i in identifier]
    params = {"member": member, "systems": sorted({i.system for i in given})}
    change = link if action == "link" else unlink
    with operator_audit(ctx, f"members.{action}", "members", params) as audited:
        with ctx.db.connect("backend") as conn:
            changed = change(conn, _member_id(member), given)
        audited["changed"] = changed
    return changed


@members_app.command("link")
def members_link(
    member: Annotated[str, typer.Argument(help="the member's id")],
    identifier: Identifiers,
) -> None:
    """Record the member's identifiers at a source (a hospital's MRN, a lab's patient
    number): a FHIR bundle whose Patient carries one of them is then the member's. Audited
    as the operator (the systems, never the values)."""
    new = _change_identifiers(member, identifier, "link")
    console.print(
        f"{new} new identifier(s) linked to {member} ({len(identifier) - new} already were)"
    )


@members_app.command("unlink")
def members_unlink(
    member: Annotated[str, typer.Argument(help="the member's id")],
    identifier: Identifiers,
) -> None:
    """Remove identifiers from a member (a wrong link). Audited as the operator."""
    removed = _change_identifiers(member, identifier, "unlink")
    console.print(f"{removed} identifier(s) unlinked from {member}")


@members_app.command("identify")
def members_identify(
    member: Annotated[
        str | None, typer.Argument(help="a member's id: list their identifiers")
    ] = None,
    identifier: Annotated[
        list[str] | None,
        typer.Option("--identifier", "-i", help="SYSTEM|VALUE: which member holds it"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Who holds an identifier (`--identifier SYSTEM|VALUE`), or a member's identifiers.
    Audited as the operator (a read of personal data)."""
    from rich.table import Table

    from backend.cli.operator import operator_audit
    from backend.exceptions import UserError
    from backend.identity.identifiers import Identifier, find, of_member

    if (member is None) == (not identifier):
        raise UserError("give a member id, or --identifier SYSTEM|VALUE (not both)")
    ctx = runtime()
    params = {"member": member, "identifiers": len(identifier or [])}
    with (
        operator_audit(ctx, "members.identify", "members", params),
        ctx.db.connect("backend") as conn,
    ):
        if member is not None:
            links = of_member(conn, _member_id(member))
            rows = [(str(x.identifier), str(x.member_id), x.how) for x in links]
        else:
            wanted = [Identifier.parse(i) for i in identifier or []]
            held = find(conn, wanted)
            rows = [
                (str(i), str(held[i].member_id), held[i].how) if i in held else (str(i), "", "")
                for i in wanted
            ]
    if as_json:
        print_json([{"identifier": i, "member": m or None, "how": h or None} for i, m, h in rows])
        return
    table = Table(title="Member identifiers", title_justify="left")
    for col in ("identifier", "member", "linked by"):
        table.add_column(col)
    for row in rows:
        table.add_row(*(c or "-" for c in row))
    console.print(table)
