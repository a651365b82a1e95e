"""Prefect flow detecting coaching alerts: a thin wrapper over `backend.coaching.alerts.detect`
(tested on its own). Each run re-evaluates the last `lookback_days` days (late data changes
recent days; stored alerts are never repeated), and reports what it did to the run's log
and a table artifact, so the Prefect UI shows it."""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from backend.coaching.alerts import detect
from backend.runtime import Runtime

LOOKBACK_DAYS = 3


@flow(name="detect-alerts")
def detect_alerts_flow(lookback_days: int = LOOKBACK_DAYS) -> dict[str, object]:
    """Evaluate the coaching rules on every member's last `lookback_days` days (to today, UTC)
    and store new alerts (as the refiner role, which owns the analytics zone)."""
    ctx = Runtime.from_env()
    end = dt.datetime.now(dt.UTC).date()
    start = end - dt.timedelta(days=max(lookback_days, 1) - 1)
    with ctx.db.connect("refiner") as conn:
        report = detect(conn, start, end)
    get_run_logger().info(
        "evaluated %d member-day(s) of %d member(s) from %s to %s: %d flag(s), %d new alert(s),"
        " %.2f s",
        report.member_days,
        report.members,
        start,
        end,
        report.fired,
        report.inserted,
        report.seconds,
    )
    create_table_artifact(
        key="detect-alerts",
        table=[
            {"measure": "members", "value": report.members},
            {"measure": "member-days evaluated", "value": report.member_days},
            {"measure": "flags fired", "value": report.fired},
            {"measure": "new alerts", "value": report.inserted},
        ],
        description=f"{start} .. {end}",
    )
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "members": report.members,
        "member_days": report.member_days,
        "fired": report.fired,
        "inserted": report.inserted,
        "seconds": round(report.seconds, 3),
    }
