"""`rejuve alerts`: run the coaching alert detector now, over as many past days as asked
(the `detect-alerts` flow looks at the last 3), and see what is stored."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from backend.cli.app import runtime
from backend.cli.output import console

alerts_app = typer.Typer(no_args_is_help=True, help="Coaching alerts (flags stored by day).")


@alerts_app.command("detect")
def alerts_detect(
    days: Annotated[
        int, typer.Option(min=1, max=3660, help="evaluate this many days up to today (UTC)")
    ] = 3,
) -> None:
    """Evaluate the coaching rules on every member's last DAYS days and store new alerts
    (what the `detect-alerts` flow does every few minutes for 3 days; more after loading
    history). Re-running adds nothing already stored."""
    from backend.coaching.alerts import detect

    ctx = runtime()
    end = dt.datetime.now(dt.UTC).date()
    start = end - dt.timedelta(days=days - 1)
    with ctx.db.connect("refiner") as conn:
        report = detect(conn, start, end)
    console.print(
        f"{start} .. {end}: {report.member_days:,} member-day(s) of {report.members:,}"
        f" member(s), {report.fired:,} flag(s), {report.inserted:,} new alert(s)"
        f" in {report.seconds:.2f} s"
    )


@alerts_app.command("status")
def alerts_status() -> None:
    """Stored alerts by rule and status."""
    ctx = runtime()
    with ctx.db.connect("query", autocommit=True) as conn:
        rows = conn.execute(
            "select rule_id, rule_version, status, count(*) from analytics.alerts"
            " group by 1, 2, 3 order by 1, 2, 3"
        ).fetchall()
    if not rows:
        console.print("no alerts stored")
    for rule, version, status, n in rows:
        console.print(f"{rule} v{version} {status}: {n:,}")
