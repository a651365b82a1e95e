"""`rejuve`: run and inspect the local platform.

The entry point is the only place that reads the environment (via Settings)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from backend import logs
from backend.cli.output import console, err, print_json, services_table
from backend.exceptions import ServiceDown, UserError
from backend.settings import Settings
from backend.stack import supervisor
from backend.stack.context import StackContext

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Run and inspect the Rejuve health-data platform.",
)

_state: dict[str, bool] = {"verbose": False}

Services = Annotated[list[str] | None, typer.Argument(help="services (default: all)")]


def _ctx(service: bool = False) -> StackContext:
    """Settings from the environment. People's commands log warnings only (their output is
    the tables); services log at REJUVE_LOG_LEVEL into their log files."""
    settings = Settings()
    level = settings.log_level if service or _state["verbose"] else "WARNING"
    logs.configure(level, settings.log_json)
    return StackContext.from_settings(settings)


context = _ctx  # for the sub-command modules


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show error details")] = False,
) -> None:
    _state["verbose"] = verbose


@app.command()
def up(services: Services = None) -> None:
    """Start the local stack (set-up on first use), apply migrations, show where it runs."""
    ctx = _ctx()
    with console.status("starting") as spinner:
        rows = supervisor.up(ctx, services, progress=lambda m: spinner.update(m))
    console.print(services_table(rows))
    if any(r.state in ("down", "degraded") for r in rows):
        raise ServiceDown("some services are not healthy; see their logs above")
    console.print("Stop it with [bold]rejuve down[/] (or [bold]make down[/]).")


@app.command()
def down(services: Services = None) -> None:
    """Stop the local stack's services (data is kept)."""
    ctx = _ctx()
    with console.status("stopping") as spinner:
        rows = supervisor.down(ctx, services, progress=lambda m: spinner.update(m))
    console.print(services_table(rows))


@app.command()
def status(
    services: Services = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show each service: state, address, pid and log file."""
    rows = supervisor.status(_ctx(), services)
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

    ctx = _ctx()
    if downgrade:
        m.downgrade(ctx.db, target)
    else:
        m.upgrade(ctx.db, target)
    console.print(f"database {ctx.db.dbname} at revision {m.current(ctx.db) or 'base'}")


@app.command()
def psql(
    role: Annotated[
        str, typer.Option(help="super, owner, ingest, refiner, query or prefect")
    ] = "owner",
    command: Annotated[str | None, typer.Option("-c", help="run one SQL command")] = None,
    dbname: Annotated[str | None, typer.Option("--db", help="database (default: zones)")] = None,
) -> None:
    """Open psql on the stack's database over verified TLS (for operators)."""
    from psycopg.conninfo import make_conninfo

    from backend.stack.timescaledb import find_bindir

    ctx = _ctx()
    if role not in ("super", "owner", *ctx.db.roles.app, "prefect"):
        raise UserError(f"unknown role '{role}'")
    if role == "prefect" and dbname is None:
        dbname = "prefect"
    bindir = find_bindir(ctx.settings.pg_tree)
    exe = str(bindir / "psql") if bindir else "psql"
    dsn = make_conninfo(ctx.db.conninfo(role, dbname), password=None)
    # The password goes through the environment, never the command line (visible in ps).
    env = {**os.environ, "PGPASSWORD": ctx.db.passwords[role]}
    args = [exe, dsn, "-v", "ON_ERROR_STOP=1", *(["-c", command] if command else [])]
    raise typer.Exit(subprocess.run(args, env=env, check=False).returncode)


@app.command()
def demo() -> None:
    """Bring the stack up, land sample records in the raw zone and show where everything runs."""
    from backend.demo import run_demo

    ctx = _ctx()
    run_demo(ctx, console)


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="the file to ingest")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="apple-health, fhir, omh, csv-lab or device-batch")
    ],
    member: Annotated[
        str | None,
        typer.Option(
            help="the member the file belongs to (UUID); a csv-lab file without "
            "it is split by its member column"
        ),
    ] = None,
    source: Annotated[str | None, typer.Option(help="source name (default cli:FORMAT)")] = None,
    batch_id: Annotated[str | None, typer.Option(help="idempotency key: resending is safe")] = None,
    mapping: Annotated[Path | None, typer.Option(help="CSV column mapping (TOML)")] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for refinement")] = 600,
) -> None:
    """Land a file in the raw zone (encrypted), refine it and show what became of it."""
    from backend.cli.data_cmds import ingest as run_ingest

    run_ingest(_ctx(), path, fmt, member, source, batch_id, mapping, timeout)


@app.command()
def reconcile(
    batch: Annotated[str | None, typer.Option(help="one batch")] = None,
    since: Annotated[str | None, typer.Option(help="batches received since (ISO time)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    grace: Annotated[
        float,
        typer.Option(
            help="seconds a landed batch may wait for the refiner before it counts as missing"
        ),
    ] = 300,
) -> None:
    """Prove nothing was lost: parsed = processed + quarantined + duplicate, per batch."""
    from backend.cli.data_cmds import reconcile_cmd

    if not reconcile_cmd(_ctx(), batch, since, as_json, grace):
        raise typer.Exit(1)


@app.command()
def quality(
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Data-quality metrics per batch: completeness, validity, duplicates, lateness."""
    from backend.cli.data_cmds import quality_cmd

    quality_cmd(_ctx(), limit, as_json)


def backend_workers(configured: int) -> int:
    """REJUVE_BACKEND_WORKERS, or one worker process per core when it is 0."""
    return configured if configured > 0 else (os.cpu_count() or 1)


def _die_with_parent() -> None:
    """In a worker process: end when uvicorn's parent does. A parent killed with -9 would
    otherwise leave its workers serving the old code on the port, where the restarted
    backend cannot bind."""
    import ctypes
    import multiprocessing
    import signal

    parent = multiprocessing.parent_process()
    if parent is None or sys.platform != "linux":
        return  # one worker: uvicorn serves in the supervised process itself
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent.pid:  # the parent died before the line above
        raise SystemExit(1)


def backend_app() -> object:
    """The backend app of one worker process (uvicorn's factory: each worker builds its
    own pools, policy listener, audit writer and token cache; rate limits are in Redis)."""
    _die_with_parent()
    from backend.api.app import create_app

    ctx = _ctx(service=True)
    s = ctx.settings
    from backend.api.governance_state import GovernanceState, Rate, SharedRateLimiter
    from backend.keys.study_keys import StudyKeys

    workers = backend_workers(s.backend_workers)

    def governance() -> GovernanceState:
        from backend.identity.hub_client import HubTokenValidator
        from backend.stack.hub_server import SERVICE

        # People are who JupyterHub says they are: their Hub token, checked with the Hub.
        validator = HubTokenValidator(
            ctx.hub.api_url, ctx.hub.backend_token, ctx.layout.ca_cert, service_name=SERVICE
        )
        return GovernanceState.open(
            ctx.db,
            validator,
            StudyKeys(ctx.layout.keys / "studies", ctx.kms()),
            ctx.settings.region,
            SharedRateLimiter.open(
                ctx.redis.url,
                ctx.redis.ca_file,
                Rate(s.rate_limit_per_second, s.rate_limit_burst),
                Rate(s.rate_limit_anonymous_per_second, s.rate_limit_anonymous_burst),
            ),
            # The database's connection budget is shared by the workers.
            query_connections=max(4, 32 // workers),
        )

    from backend.api.request_guard import RequestLimits

    return create_app(
        governance=governance,
        limits=RequestLimits(s.max_request_bytes, s.max_query_bytes),
        db=ctx.db,
        keys=ctx.keystore(),
        region=s.region,
        max_batch_bytes=s.max_batch_bytes,
    )


@app.command("backend-run", hidden=True)
def backend_run() -> None:
    """Serve the backend API over HTTPS in the foreground (the supervisor runs it), as
    REJUVE_BACKEND_WORKERS processes (default: one per core)."""
    import uvicorn

    ctx = _ctx(service=True)
    s = ctx.settings
    uvicorn.run(
        "backend.cli.main:backend_app",
        factory=True,
        workers=backend_workers(s.backend_workers),
        host="127.0.0.1",
        port=s.backend_port,
        log_level="warning",
        ssl_certfile=str(ctx.layout.server_cert),
        ssl_keyfile=str(ctx.layout.server_key),
        access_log=False,
        timeout_graceful_shutdown=10,
        # A new worker imports the whole platform before it answers uvicorn's health ping;
        # on a loaded machine that takes longer than uvicorn's 5 s, and it would kill and
        # respawn workers forever.
        timeout_worker_healthcheck=30,
    )


@app.command("flows-run", hidden=True)
def flows_run() -> None:
    """Serve the Prefect deployments (the supervisor runs it with the Prefect API settings)."""
    from typing import cast

    from prefect import serve
    from prefect.deployments.runner import RunnerDeployment

    from backend.ingest import dropbox
    from flows.ingest import drop_folder_flow, ingest_file_flow

    ctx = _ctx(service=True)
    dropbox.ensure(ctx.drop_dir)
    # to_deployment is sync-or-async by context; called from sync code it is the object.
    drop = cast(
        RunnerDeployment,
        drop_folder_flow.to_deployment(
            name="drop-folder",
            interval=ctx.settings.drop_interval_seconds,
            description=f"ingest files dropped into {ctx.drop_dir}/<format>/<member>/",
        ),
    )
    one = cast(
        RunnerDeployment,
        ingest_file_flow.to_deployment(name="ingest-file", description="land and refine one file"),
    )
    serve(drop, one, print_starting_message=False)


sources_app = typer.Typer(no_args_is_help=True, help="Ingestion sources and their API keys.")


@sources_app.command("add")
def sources_add(
    name: Annotated[str, typer.Argument(help="source name, e.g. acme-watch")],
    rotate: Annotated[bool, typer.Option(help="replace the key of an existing source")] = False,
) -> None:
    """Register a source; prints its API key once (it is stored hashed)."""
    from backend.api.api_keys import register

    with _ctx().db.connect("owner") as conn:
        key = register(conn, name, rotate=rotate)
    console.print(f"API key for [bold]{name}[/] (shown once, store it now):")
    console.print(key, soft_wrap=True, highlight=False)


@sources_app.command("revoke")
def sources_revoke(name: str) -> None:
    """Revoke a source's API key: its requests are refused from now on."""
    from backend.api.api_keys import revoke

    with _ctx().db.connect("owner") as conn:
        if not revoke(conn, name):
            raise UserError(f"no active source '{name}'")
    console.print(f"revoked {name}")


audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit trail.")


@audit_app.command("verify")
def audit_verify(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Recompute the hash chain; name every edited, deleted or reordered record."""
    from backend.governance import audit

    with console.status("verifying the audit chain"), _ctx().db.connect("backend") as conn:
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
    """Create an account (the password is stored as a bcrypt hash)."""
    from backend.identity import hub_auth

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    ctx = _ctx()
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
    for u in hub_auth.list_users(_ctx().hub.user_store):
        table.add_row(u.name, ", ".join(sorted(u.groups)))
    console.print(table)


@users_app.command("remove")
def users_remove(name: str) -> None:
    """Remove an account; its sessions and tokens stop working at the Hub's next refresh.
    The notebook account and its home (the person's notebooks) are deleted too."""
    from backend.identity import accounts, hub_auth

    hub_auth.remove_user(_ctx().hub.user_store, name)
    home = accounts.remove(name) if os.geteuid() == 0 else False
    console.print(f"removed {name}" + (" and their notebook account" if home else ""))


def _register_subcommands() -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(audit_app, name="audit")
    app.add_typer(sources_app, name="sources")
    from backend.cli.data_cmds import quarantine_app
    from backend.cli.policy_cmds import policy_app

    app.add_typer(quarantine_app, name="quarantine")
    app.add_typer(policy_app, name="policy")
    from backend.cli.member_cmds import members_app
    from backend.cli.study_cmds import studies_app

    app.add_typer(members_app, name="members")
    app.add_typer(studies_app, name="studies")


@app.command("refiner-run", hidden=True)
def refiner_run() -> None:
    """Run the refiner in the foreground (the supervisor starts it as a service)."""
    import signal
    import threading

    from backend.refine.runner import run_workers

    ctx = _ctx(service=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_workers(
        ctx.db,
        ctx.keystore,
        stop,
        ctx.settings.refiner_workers,
        heartbeat=ctx.layout.run / "refiner.heartbeat",
    )


def main() -> None:
    _register_subcommands()
    try:
        # Without standalone mode click returns the exit code of typer.Exit instead of exiting.
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except UserError as e:
        err.print(f"[red]error:[/] {e}")
        if e.detail and _state["verbose"]:
            err.print(e.detail)
        elif e.detail:
            err.print("[dim](run with -v for details)[/]")
        sys.exit(e.exit_code)
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", getattr(e, "code", 0))
        sys.exit(code or 0)
    except typer.Abort:
        sys.exit(130)
    except Exception as e:  # the last line of defence: one line, traceback on request
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        err.print(f"[red]internal error:[/] {type(e).__name__}: {e}")
        if _state["verbose"]:
            err.print_exception()
        else:
            err.print("[dim](run with -v for the traceback)[/]")
        sys.exit(1)


if __name__ == "__main__":
    main()
