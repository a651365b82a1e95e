"""`rejuve studies`: the study registry from the host (audited as the operator)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from backend.cli.output import console, print_json

if TYPE_CHECKING:
    from psycopg import Connection

    from backend.governance.studies import AccountDirectory
    from backend.runtime import Runtime

studies_app = typer.Typer(no_args_is_help=True, help="Studies and their researchers.")


@studies_app.command("list")
def studies_list(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every study, its researchers, and whether it is closed."""
    from backend.cli.app import context
    from backend.governance import studies

    with context().db.connect("backend") as conn:
        found = studies.listing(conn)
    if as_json:
        print_json([{**s.__dict__, "researchers": list(s.researchers)} for s in found])
        return
    table = Table(title="Studies", title_justify="left")
    for col in ("study", "title", "access", "researchers", "closed"):
        table.add_column(col)
    for s in found:
        closed = s.closed_at.date().isoformat() if s.closed_at else ""
        table.add_row(s.study_id, s.title, s.access_level, ", ".join(s.researchers), closed)
    console.print(table)


@studies_app.command("add")
def studies_add(
    study: Annotated[str, typer.Argument(help="id: lower-case letters, digits, '-'")],
    title: Annotated[str, typer.Option(help="what the study is")],
    researcher: Annotated[
        list[str] | None, typer.Option(help="a Hub user working on it (repeatable)")
    ] = None,
) -> None:
    """Declare a study, optionally with its researchers (audited)."""
    import re

    from backend.cli.app import context
    from backend.cli.operator import operator_audit
    from backend.exceptions import UserError
    from backend.governance import studies

    if not re.fullmatch(studies.STUDY_ID, study):
        raise UserError(f"invalid study id {study!r}", "lower-case letters, digits and '-'")
    ctx = context()
    names = researcher or []
    # Refuse before anything is created: a study must not appear half-made.
    accounts = _accounts(ctx)
    for name in names:
        studies.require_account(accounts, name)
    with (
        operator_audit(
            ctx, "studies.create", "studies", {"study_id": study, "researchers": names}
        ) as params,
        ctx.db.connect("backend") as conn,
    ):
        params["changed"] = created = studies.create(conn, study, title, "operator")
        for name in names:
            studies.add_researcher(conn, study, name, accounts=accounts)
    console.print(
        f"{'created' if created else 'already there'}: {study}"
        + (f" (researchers: {', '.join(names)})" if names else "")
    )


def _accounts(ctx: Runtime) -> AccountDirectory:
    """Researchers must have an account (with the researcher role) before they join."""
    from backend.identity.hub_auth import StoreDirectory

    return StoreDirectory(ctx.hub.user_store)


def _researchers(study: str, names: list[str], remove: bool) -> None:
    from backend.cli.app import context
    from backend.cli.operator import operator_audit
    from backend.governance import studies

    ctx = context()
    what = "remove" if remove else "add"

    def change(conn: Connection, study: str, name: str) -> bool:
        if remove:
            return studies.remove_researcher(conn, study, name)
        return studies.add_researcher(conn, study, name, accounts=_accounts(ctx))

    with (
        operator_audit(
            ctx,
            f"studies.researchers.{what}",
            f"studies/{study}/researchers",
            {"researchers": names},
        ) as params,
        ctx.db.connect("backend") as conn,
    ):
        params["changed"] = [name for name in names if change(conn, study, name)]
    console.print(f"{'removed from' if remove else 'added to'} {study}: {', '.join(names)}")


@studies_app.command("researchers")
def studies_researchers(
    study: str,
    names: Annotated[list[str], typer.Argument(help="Hub users")],
    remove: Annotated[bool, typer.Option(help="take them off the study instead")] = False,
) -> None:
    """Add researchers to a study, or take them off it (audited)."""
    _researchers(study, names, remove)


@studies_app.command("close")
def studies_close(study: str) -> None:
    """Close a study for good: its researchers' requests are refused from now on."""
    from backend.cli.app import context
    from backend.cli.operator import operator_audit
    from backend.governance import studies

    ctx = context()
    with (
        operator_audit(ctx, "studies.close", f"studies/{study}/close", {}) as params,
        ctx.db.connect("backend") as conn,
    ):
        params["changed"] = studies.close(conn, study)
    console.print(f"closed: {study}")


@studies_app.command("access")
def studies_access(
    study: str,
    level: Annotated[str, typer.Argument(help="aggregate | row-level")],
) -> None:
    """Set what a study's researchers may pull: `aggregate` (cohort statistics only) or
    `row-level` (pseudonymised extracts and training sets too). Audited."""
    from backend.cli.app import context
    from backend.cli.operator import operator_audit
    from backend.governance import studies

    ctx = context()
    with (
        operator_audit(
            ctx, "studies.access_level", f"studies/{study}/access-level", {"level": level}
        ) as params,
        ctx.db.connect("backend") as conn,
    ):
        params["changed"] = studies.set_access_level(conn, study, level)
    console.print(f"{study}: {level}")
