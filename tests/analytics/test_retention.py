"""Retention drops whole chunks older than a zone's setting, never below the floor, and
leaves the rollups of dropped observations (dropping is not an erasure)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from backend.analytics import retention, rollups
from backend.db.access import DatabaseAccess
from backend.exceptions import Invalid
from tests import seed

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def test_old_chunks_go_recent_ones_stay_and_rollups_survive(migrated_db: DatabaseAccess) -> None:
    m = uuid.uuid4()
    old, recent = NOW - dt.timedelta(days=400), NOW - dt.timedelta(days=3)
    with migrated_db.connect("owner") as conn:
        seed.observations(
            conn, [(m, old, "8867-4", 60.0, "/min"), (m, recent, "8867-4", 70.0, "/min")]
        )
        seed.rolled_up(conn)
        dropped = retention.apply(conn, {"processed": 365, "raw": 0}, minimum_days=30, now=NOW)
        conn.commit()
        left = conn.execute(
            "select value from processed.observations where member_id = %s", (m,)
        ).fetchall()
        rolled = conn.execute(
            "select count(*) from analytics.rollup_hourly where member_id = %s", (m,)
        ).fetchone()
    assert [(d.zone, d.chunks >= 1) for d in dropped] == [("processed", True)]
    assert left == [(70.0,)]
    assert rolled == (2,)  # both hours' rollups are still there
    with migrated_db.connect("owner") as conn:
        assert rollups.backlog(conn)[0] == 0  # and nothing was queued to recompute them


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        ({"processed": 10}, "below the minimum of 30 days"),
        ({"audit": 100}, "unknown zone"),
        ({"raw": -1}, "must be 0"),
    ],
)
def test_a_retention_below_the_floor_is_refused(keep: dict[str, int], message: str) -> None:
    with pytest.raises(Invalid, match=message):
        retention.check(keep, minimum_days=30)
