"""The `detect-alerts` deployment as the stack serves it: on a schedule, and a run stores
the alert a member's recent days call for (a steady resting heart rate, then sleep cut in
half for the last nights)."""

from __future__ import annotations

import datetime as dt
import uuid

from backend.runtime import Runtime
from tests.prefect_runs import run_deployment


def test_the_served_deployment_detects(ctx: Runtime) -> None:
    member = uuid.uuid4()
    today = dt.datetime.now(dt.UTC).date()
    with ctx.db.connect("owner") as conn:
        for back in range(30, -1, -1):
            day = today - dt.timedelta(days=back)
            sleep = 210.0 if back < 3 else 450.0 + (back % 5) * 4
            conn.execute(
                "insert into analytics.member_daily (member_id, day, event_ts, sleep_minutes,"
                " wear_minutes) values (%s, %s, %s, %s, 0)",
                (member, day, dt.datetime.combine(day, dt.time(), dt.UTC), sleep),
            )
    deployment, state = run_deployment(ctx, "detect-alerts", {})
    assert deployment["schedules"], "it runs on a schedule"
    assert state == "COMPLETED"
    with ctx.db.connect("owner") as conn:
        fired = conn.execute(
            "select rule_id, rule_version from analytics.alerts where member_id = %s order by 1",
            (member,),
        ).fetchall()
        conn.execute("delete from analytics.alerts where member_id = %s", (member,))
        conn.execute("delete from analytics.member_daily where member_id = %s", (member,))
    # Both the generic (< 5 h) and the personal rule (far below her own 7.5 h) fire.
    assert fired == [("sleep-down", 1), ("sleep-short", 1)]


def test_the_cli_detects_over_more_days(ctx: Runtime) -> None:
    import subprocess
    import sys
    from pathlib import Path

    rejuve = str(Path(sys.executable).parent / "rejuve")
    res = subprocess.run(
        [rejuve, "alerts", "detect", "--days", "30"], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    assert "member-day(s)" in res.stdout and "new alert(s)" in res.stdout
    bad = subprocess.run(
        [rejuve, "alerts", "detect", "--days", "0"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    status = subprocess.run(
        [rejuve, "alerts", "status"], capture_output=True, text=True, check=False
    )
    assert status.returncode == 0, status.stderr
