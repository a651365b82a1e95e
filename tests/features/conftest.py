"""The feature store on the running stack: the repository applied once per session (the
same command an operator runs), a store per session, and member-day rows written the way
the rollup worker writes them (as the owner, until that worker is merged)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from feast import FeatureStore

from backend.features.environment import close_store, open_store
from backend.runtime import Runtime

REJUVE = Path(sys.executable).parent / "rejuve"


@pytest.fixture(scope="session")
def applied(ctx: Runtime) -> None:
    subprocess.run([str(REJUVE), "features", "apply"], check=True, capture_output=True)


@pytest.fixture(scope="session")
def store(ctx: Runtime, applied: None) -> Iterator[FeatureStore]:
    fs = open_store(ctx)
    yield fs
    close_store(fs)


@pytest.fixture
def owner(ctx: Runtime) -> Iterator[psycopg.Connection]:
    with ctx.db.connect("owner") as conn:
        yield conn


def put_day(
    conn: psycopg.Connection,
    member: uuid.UUID,
    day: dt.date,
    *,
    steps: float | None = 8000,
    resting_hr: float | None = 60,
    sleep_minutes: float | None = 420,
    computed_at: dt.datetime | None = None,
    queue: bool = True,
) -> None:
    """One member-day as the rollup worker leaves it (upsert), and its queue row."""
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
    conn.execute(
        "insert into analytics.member_daily (member_id, day, event_ts, computed_at, steps,"
        " active_minutes, resting_hr, hrv_ms, sleep_minutes, sleep_efficiency, wear_minutes)"
        " values (%s, %s, %s, coalesce(%s, now()), %s, 30, %s, 50, %s, 0.9, 1200)"
        " on conflict (member_id, day) do update set computed_at = excluded.computed_at,"
        " steps = excluded.steps, resting_hr = excluded.resting_hr,"
        " sleep_minutes = excluded.sleep_minutes",
        (member, day, end, computed_at, steps, resting_hr, sleep_minutes),
    )
    if queue:
        conn.execute(
            "insert into analytics.feature_dirty (member_id, day) values (%s, %s)", (member, day)
        )
    conn.commit()
