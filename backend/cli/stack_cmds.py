"""`rejuve up | down | status | migrate | psql | demo`: the local stack and its database."""

from __future__ import annotations

from typing import Annotated

import typer

from backend.cli.app import app, runtime, stack
from backend.cli.output import console

Services = Annotated[list[str] | None, typer.Argument(help="services (default: all)")]


@app.command()
def up(services: Services = None) -> None:
    """Start the local stack (set-up on first use), apply migrations, show where it runs."""
    from backend.cli.output import services_table
    from backend.exceptions import ServiceDown
    from backend.stack import supervisor

    ctx = stack()
    with console.status("starting") as spinner:
        rows = supervisor.up(ctx, services, progress=lambda m: spinner.update(m))
    console.print(services_table(rows))
    if any(r.state in ("down", "degraded") for r in rows):
        raise ServiceDown("some services are not healthy; see their logs above")
    console.print("Stop it with [bold]rejuve down[/] (or [bold]make down[/]).")


@app.command()
def down(services: Services = None) -> None:
    """Stop the local stack's services (data is kept)."""
    from backend.cli.output import services_table
    from backend.stack import supervisor

    ctx = stack()
    with console.status("stopping") as spinner:
        rows = supervisor.down(ctx, services, progress=lambda m: spinner.update(m))
    console.print(services_table(rows))


@app.command()
def status(
    services: Services = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show each service: state, address, pid and log file."""
    from backend.cli.output import print_json, services_table
    from backend.stack import supervisor

    rows = supervisor.status(stack(), services)
    if as_json:
        print_json([r.as_dict() for r in rows])
    else:
        console.print(services_table(rows))


@app.command()
def migrate(
    target: Annotated[str, typer.Argument(help="revision, or 'head'")] = "head",
    downgrade: Annotated[bool, typer.Option(help="downgrade to TARGET instead")] = False,
) -> None:
    """Apply (or roll back) database migrations as the owner role."""
    from backend.db import migrate as m

    ctx = runtime()
    if downgrade:
        m.downgrade(ctx.db, target)
    else:
        m.upgrade(ctx.db, target)
    console.print(f"database {ctx.db.dbname} at revision {m.current(ctx.db) or 'base'}")


@app.command(
    # Everything after our own options is psql's: `rejuve psql --role query -At -c '...'`.
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def psql(
    ctx: typer.Context,
    role: Annotated[
        str, typer.Option(help="super, owner, ingest, refiner, query, backend or prefect")
    ] = "owner",
    dbname: Annotated[
        str | None, typer.Option("--db", help="database (default: the zones database)")
    ] = None,
) -> None:
    """Open psql on the stack's database over verified TLS (for operators). Other options
    and arguments go to psql as they are, e.g. -At -c 'select 1'."""
    import os
    import subprocess

    from psycopg.conninfo import make_conninfo

    from backend.exceptions import UserError
    from backend.stack.timescaledb import find_bindir

    rt = runtime()
    if role not in ("super", "owner", *rt.db.roles.app, "prefect"):
        raise UserError(f"unknown role '{role}'")
    if role == "prefect" and dbname is None:
        dbname = "prefect"
    bindir = find_bindir(rt.settings.pg_tree)
    exe = str(bindir / "psql") if bindir else "psql"
    dsn = make_conninfo(rt.db.conninfo(role, dbname), password=None)
    # The password goes through the environment, never the command line (visible in ps).
    env = {**os.environ, "PGPASSWORD": rt.db.passwords[role]}
    args = [exe, dsn, "-v", "ON_ERROR_STOP=1", *ctx.args]
    raise typer.Exit(subprocess.run(args, env=env, check=False).returncode)


@app.command()
def demo() -> None:
    """Bring the stack up, land sample records in the raw zone and show where everything runs."""
    from backend.demo import run_demo

    run_demo(stack(), console)
