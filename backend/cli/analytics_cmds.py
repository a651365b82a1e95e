"""`rejuve rollups` (the analytics zone's queue and rebuilds) and `rejuve retention`."""

from __future__ import annotations

from typing import Annotated

import typer

from backend.cli.app import runtime
from backend.cli.output import console

rollups_app = typer.Typer(no_args_is_help=True, help="The analytics zone's rollups.")
retention_app = typer.Typer(no_args_is_help=True, help="How long each zone keeps its data.")


@rollups_app.command("status")
def rollups_status() -> None:
    """Keys waiting for the `rollups` service, the oldest one's age, and what the rollups
    hold."""
    from backend.analytics import rollups

    ctx = runtime()
    with ctx.db.connect("query", autocommit=True) as conn:
        queued, oldest = rollups.backlog(conn)
        counts = conn.execute(
            "select (select count(*) from analytics.rollup_hourly),"
            " (select count(*) from analytics.rollup_daily),"
            " (select count(*) from analytics.member_daily)"
        ).fetchone() or (0, 0, 0)
    age = f", oldest {oldest:.1f} s" if oldest is not None else ""
    console.print(f"queued keys: {queued}{age}")
    console.print(
        f"hourly rollups: {counts[0]:,}; daily rollups: {counts[1]:,}; member-days: {counts[2]:,}"
    )


@rollups_app.command("refresh")
def rollups_refresh() -> None:
    """Build the rollups of every queued key now (what the `rollups` service does within a
    second; for a stack whose service is stopped)."""
    from backend.analytics import rollups

    ctx = runtime()
    with ctx.db.connect("refiner") as conn:
        rounds = rollups.refresh_all(conn)
    keys = sum(r.keys for r in rounds)
    seconds = sum(r.seconds for r in rounds)
    console.print(f"refreshed {keys:,} key(s) in {seconds:.2f} s")


@rollups_app.command("rebuild")
def rollups_rebuild(
    member: Annotated[
        str | None, typer.Option(help="only this member's rollups (a member id)")
    ] = None,
) -> None:
    """Queue every key of the processed zone (or one member's) for the `rollups` service:
    after a restore, or when a summary's definition changed."""
    import uuid

    from backend.analytics import rollups
    from backend.exceptions import Invalid

    try:
        who = uuid.UUID(member) if member else None
    except ValueError:
        raise Invalid(f"--member {member!r} is not a member id") from None
    ctx = runtime()
    with ctx.db.connect("owner") as conn:
        n = rollups.queue_all(conn, who)
    console.print(f"queued {n:,} key(s); `rejuve rollups status` shows the service's progress")


@retention_app.command("show")
def retention_show() -> None:
    """Each zone's retention (REJUVE_RETENTION_*_DAYS) and the floor."""
    from backend.analytics import retention

    s = runtime().settings
    for zone, days in s.retention_days().items():
        keep = f"{days} days" if days else "for ever"
        console.print(f"{zone:<10} {retention.ZONES[zone]:<26} {keep}")
    console.print(f"minimum: {s.retention_minimum_days} days (REJUVE_RETENTION_MINIMUM_DAYS)")


@retention_app.command("apply")
def retention_apply() -> None:
    """Drop the chunks each zone no longer keeps (audited as an operator action)."""
    from backend.analytics import retention
    from backend.cli.operator import operator_audit

    ctx = runtime()
    keep = ctx.settings.retention_days()
    retention.check(keep, ctx.settings.retention_minimum_days)
    with (
        operator_audit(ctx, "retention.apply", "retention", {"keep_days": keep}) as params,
        ctx.db.connect("owner") as conn,
    ):
        dropped = retention.apply(conn, keep, ctx.settings.retention_minimum_days)
        params["chunks"] = {d.zone: d.chunks for d in dropped}
    if not dropped:
        console.print("every zone keeps its data for ever: nothing dropped")
    for d in dropped:
        console.print(f"{d.zone}: {d.chunks} chunk(s) older than {d.keep_days} days dropped")
