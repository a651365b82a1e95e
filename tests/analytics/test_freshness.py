"""On the running stack: a batch a device sends is in the rollups and the member-day
summary within seconds (the `rollups` service, as its own database role), and a late
reading of a day already summarised corrects that day."""

from __future__ import annotations

import time
import uuid

import httpx

from backend.runtime import Runtime
from tests.devices import enrolled_member, source_client


def _send(client: httpx.Client, member: uuid.UUID, day: str, values: list[int]) -> None:
    """Heart rate on the minutes from 07:00 of `day`, one reading a minute."""
    r = client.post(
        "/v1/ingest/batches",
        json={
            "batch_id": f"fresh-{uuid.uuid4()}",
            "member_id": str(member),
            "device": "test-watch",
            "samples": [
                {"code": "8867-4", "value": v, "unit": "/min", "start": f"{day}T07:{i:02d}:00Z"}
                for i, v in enumerate(values)
            ],
        },
    )
    assert r.status_code == 201, r.text


def _wait_day(ctx: Runtime, member: uuid.UUID, day: str, want: int, timeout: float = 10) -> float:
    """Seconds until the member-day shows `want` minutes of wear."""
    started = time.monotonic()
    with ctx.db.connect("query", autocommit=True) as conn:
        while time.monotonic() - started < timeout:
            row = conn.execute(
                "select wear_minutes from analytics.member_daily where member_id = %s and day = %s",
                (member, day),
            ).fetchone()
            if row and row[0] == want:
                return time.monotonic() - started
            time.sleep(0.1)
    raise AssertionError(f"member-day {day} not at {want} wear minutes within {timeout} s")


def test_a_batch_reaches_the_rollups_within_seconds_and_late_data_corrects_them(
    ctx: Runtime,
) -> None:
    with source_client(ctx, "fresh") as (client, source):
        member = enrolled_member(ctx, source)
        _send(client, member, "2026-06-01", [60, 61, 62])
        assert _wait_day(ctx, member, "2026-06-01", 3) < 10
        # Months later the watch syncs readings of that same morning it had kept.
        _send(client, member, "2026-06-01", [60, 61, 62, 90, 91])
        assert _wait_day(ctx, member, "2026-06-01", 5) < 10
    with ctx.db.connect("query") as conn:
        row = conn.execute(
            "select n, max from analytics.rollup_daily where member_id = %s and code = '8867-4'",
            (member,),
        ).fetchone()
    assert row == (5, 91)  # the three resent readings were duplicates
