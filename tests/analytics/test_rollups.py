"""Rollups stay exact under late, duplicate and out-of-order data and quarantine releases:
after any sequence of changes and partial refreshes, every rollup equals a recomputation
from scratch (hypothesis drives the sequences), and the member-day summaries say what the
observations say."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from psycopg import sql

from backend.analytics import rollups
from backend.db.access import DatabaseAccess

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
MEMBERS = [uuid.UUID(int=1), uuid.UUID(int=2)]
CODES = [rollups.HEART_RATE, rollups.STEPS[0]]
_COLS = (
    "member_id, observed_at, ended_at, code, value, unit, source, qualifier,"
    " dedup_key, raw_record_id, raw_received_at"
)


@pytest.fixture(scope="module")
def db(migrated_db: DatabaseAccess) -> DatabaseAccess:
    # This module's tests commit: each starts by emptying what it uses.
    return migrated_db


def _observation(
    member: uuid.UUID,
    code: str,
    at: dt.datetime,
    value: float,
    *,
    ended: dt.datetime | None = None,
    qualifier: str | None = None,
    source: str = "t",
) -> tuple[Any, ...]:
    key = hashlib.sha256(
        f"{member}{code}{at.isoformat()}{value}{qualifier}{source}".encode()
    ).digest()
    unit = {rollups.HEART_RATE: "/min", rollups.SLEEP_STAGE: "min"}.get(code, "{steps}")
    return (member, at, ended, code, value, unit, source, qualifier, key, uuid.uuid4(), at)


def ingest(conn: psycopg.Connection, rows: list[tuple[Any, ...]]) -> int:
    """What the refiner does with a batch: stage, insert new rows, queue their keys."""
    with conn.transaction():
        conn.execute(
            "create temp table if not exists stage"
            " (like processed.observations including defaults) on commit delete rows"
        )
        with conn.cursor().copy(f"copy stage ({_COLS}) from stdin") as copy:
            for row in rows:
                copy.write_row(row)
        inserted, _ = rollups.insert_staged(conn, "stage", sql.SQL(_COLS))
    return inserted


def release(conn: psycopg.Connection, row: tuple[Any, ...]) -> None:
    """What a quarantine release does: one row in, its key queued, one transaction."""
    with conn.transaction():
        conn.execute(
            f"insert into processed.observations ({_COLS}) values"
            " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) on conflict do nothing",
            row,
        )
        rollups.queue_keys(conn, row[0], row[3], row[1], "release")


_TABLES = {
    "rollup_hourly": "member_id, code, bucket",
    "rollup_daily": "member_id, code, bucket",
    "member_daily": "member_id, day",
}
_SKIP = {"computed_at"}


def snapshot(conn: psycopg.Connection) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for table, order in _TABLES.items():
        cur = conn.execute(f"select * from analytics.{table} order by {order}")
        names = [c.name for c in cur.description or []]
        out[table] = [{k: v for k, v in zip(names, r, strict=True) if k not in _SKIP} for r in cur]
    conn.rollback()
    return out


def same(a: dict[str, list[dict[str, Any]]], b: dict[str, list[dict[str, Any]]]) -> None:
    """Equal, floats up to rounding (sums merged from hours add in another order)."""
    for table in _TABLES:
        assert len(a[table]) == len(b[table]), table
        for x, y in zip(a[table], b[table], strict=True):
            for k, v in x.items():
                w = y[k]
                if isinstance(v, float) and isinstance(w, float):
                    assert math.isclose(v, w, rel_tol=1e-9, abs_tol=1e-9), (table, k, x, y)
                else:
                    assert v == w, (table, k, x, y)


def from_scratch(conn: psycopg.Connection) -> dict[str, list[dict[str, Any]]]:
    """Throw the rollups away, queue every key, rebuild: the reference."""
    with conn.transaction():
        for table in _TABLES:
            conn.execute(f"delete from analytics.{table}")
        conn.execute("delete from analytics.rollup_dirty")
        rollups.queue_all(conn)
    rollups.refresh_all(conn)
    return snapshot(conn)


def plain_hourly(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    """The hourly rollup as a GROUP BY over everything: checks the SQL itself."""
    rows = conn.execute(
        "select member_id, code, time_bucket('1 hour', observed_at), count(*), sum(value),"
        " min(value), max(value) from processed.observations group by 1, 2, 3 order by 1, 2, 3"
    ).fetchall()
    conn.rollback()
    return rows


@pytest.fixture
def conn(db: DatabaseAccess) -> Iterator[psycopg.Connection]:
    with db.connect("owner") as c:
        for table in (*_TABLES, "rollup_dirty", "feature_dirty"):
            c.execute(f"delete from analytics.{table}")
        c.execute("delete from processed.observations")
        c.commit()
        yield c


def test_a_day_summary_says_what_the_observations_say(conn: psycopg.Connection) -> None:
    m = MEMBERS[0]
    day = T0
    rows = [
        # heart rate on 90 distinct minutes (two readings in one of them)
        *[
            _observation(m, rollups.HEART_RATE, day + dt.timedelta(minutes=i), 60 + i)
            for i in range(90)
        ],
        _observation(m, rollups.HEART_RATE, day + dt.timedelta(seconds=30), 99),
        _observation(m, rollups.STEPS[0], day + dt.timedelta(hours=8), 1200),
        _observation(m, rollups.STEPS[0], day + dt.timedelta(hours=17), 3300),
        _observation(m, rollups.RESTING_HR, day + dt.timedelta(hours=7), 52),
        _observation(m, rollups.RESTING_HR, day + dt.timedelta(hours=19), 56),
        _observation(m, rollups.WEIGHT, day + dt.timedelta(hours=7), 80.0),
        _observation(m, rollups.WEIGHT, day + dt.timedelta(hours=21), 79.4),
        _observation(m, rollups.WORKOUT, day + dt.timedelta(hours=18), 35, qualifier="running"),
        # the night ending this morning: 30 min in bed awake, 400 min asleep
        _observation(
            m, rollups.SLEEP_STAGE, day - dt.timedelta(hours=1), 60,
            ended=day, qualifier="in_bed",
        ),
        _observation(
            m, rollups.SLEEP_STAGE, day + dt.timedelta(minutes=1), 400,
            ended=day + dt.timedelta(minutes=401), qualifier="asleep_core",
        ),
        _observation(
            m, rollups.SLEEP_STAGE, day - dt.timedelta(hours=1), 460,
            ended=day + dt.timedelta(minutes=400), qualifier="in_bed",
        ),
    ]  # fmt: skip
    assert ingest(conn, rows) == len(rows)
    rollups.refresh_all(conn)
    got = conn.execute(
        "select steps, active_minutes, resting_hr, body_weight_kg, wear_minutes,"
        " sleep_minutes, round(sleep_efficiency::numeric, 4)::float8, event_ts"
        " from analytics.member_daily where member_id = %s and day = %s",
        (m, day.date()),
    ).fetchone()
    # efficiency: 400 asleep / (60 + 460) in bed ending that day
    assert got == (4500, 35, 54, 79.4, 90, 400, round(400 / 520, 4), day + dt.timedelta(days=1))
    hourly = conn.execute(
        "select n, minutes, last from analytics.rollup_hourly"
        " where member_id = %s and code = %s and bucket = %s",
        (m, rollups.HEART_RATE, day),
    ).fetchone()
    assert hourly == (61, 60, 119)
    queued = conn.execute("select count(*) from analytics.feature_dirty").fetchone()
    assert queued is not None and queued[0] >= 1


def test_two_sources_of_one_night_are_alternatives_not_parts(conn: psycopg.Connection) -> None:
    """A watch's stages and a phone app's sleep episode for the same night: the night is
    the source that saw the most sleep, not their sum (which was 13 h here)."""
    m, day = MEMBERS[1], T0
    night = day - dt.timedelta(hours=1)

    def stage(minutes: float, qualifier: str, source: str) -> tuple[Any, ...]:
        ended = night + dt.timedelta(minutes=minutes)
        return _observation(
            m, rollups.SLEEP_STAGE, night, minutes, ended=ended, qualifier=qualifier, source=source
        )

    ingest(
        conn,
        [
            stage(380, "asleep_core", "Apple Watch"),
            stage(20, "awake", "Apple Watch"),
            stage(400, "asleep", "Sleep app"),
            stage(450, "in_bed", "Sleep app"),
        ],
    )
    rollups.refresh_all(conn)
    got = conn.execute(
        "select sleep_minutes, round(sleep_efficiency::numeric, 4)::float8"
        " from analytics.member_daily where member_id = %s and day = %s",
        (m, day.date()),
    ).fetchone()
    assert got == (400, round(400 / 450, 4))


def test_a_row_90_days_late_recomputes_its_hour_not_a_range(conn: psycopg.Connection) -> None:
    m = MEMBERS[0]
    ingest(
        conn,
        [
            _observation(m, rollups.HEART_RATE, T0 + dt.timedelta(hours=h), 70)
            for h in range(24 * 100)
        ],
    )
    rollups.refresh_all(conn)
    late = T0 + dt.timedelta(days=10, minutes=5)
    ingest(conn, [_observation(m, rollups.HEART_RATE, late, 130)])
    rounds = rollups.refresh_all(conn)
    assert [(r.keys, r.days) for r in rounds] == [(1, 1)]
    row = conn.execute(
        "select n, max from analytics.rollup_hourly where member_id = %s and bucket = %s",
        (m, late.replace(minute=0)),
    ).fetchone()
    assert row == (2, 130)


def test_duplicates_queue_nothing(conn: psycopg.Connection) -> None:
    rows = [_observation(MEMBERS[0], rollups.HEART_RATE, T0, 70)]
    ingest(conn, rows)
    rollups.refresh_all(conn)
    assert ingest(conn, rows) == 0
    assert rollups.backlog(conn)[0] == 0


# -- the property: any history, refreshed incrementally, equals a rebuild ----------------

_times = st.builds(
    lambda day, minute: T0 + dt.timedelta(days=day, minutes=minute),
    st.integers(0, 2),
    st.integers(0, 24 * 60 - 1),
)
_rows = st.lists(
    st.builds(
        _observation,
        st.sampled_from(MEMBERS),
        st.sampled_from(CODES),
        _times,
        st.integers(40, 180).map(float),
    ),
    min_size=1,
    max_size=12,
)


class RollupHistory(RuleBasedStateMachine):
    """Batches (late and out of order: times are drawn over three days in any order),
    re-uploads of earlier batches, releases, and partial refreshes in between."""

    conn: psycopg.Connection

    @initialize()
    def empty(self) -> None:
        self.conn = _CONN[0]
        for table in (*_TABLES, "rollup_dirty", "feature_dirty"):
            self.conn.execute(f"delete from analytics.{table}")
        self.conn.execute("delete from processed.observations")
        self.conn.commit()
        self.sent: list[list[tuple[Any, ...]]] = []

    @rule(rows=_rows)
    def batch(self, rows: list[tuple[Any, ...]]) -> None:
        ingest(self.conn, rows)
        self.sent.append(rows)

    @rule(i=st.integers(0, 100))
    def upload_again(self, i: int) -> None:
        if self.sent:
            ingest(self.conn, self.sent[i % len(self.sent)])

    @rule(member=st.sampled_from(MEMBERS), at=_times, value=st.integers(40, 180))
    def release_from_quarantine(self, member: uuid.UUID, at: dt.datetime, value: int) -> None:
        release(self.conn, _observation(member, rollups.HEART_RATE, at, float(value)))

    @rule(
        member=st.sampled_from(MEMBERS),
        at=_times,
        minutes=st.integers(10, 600),
        stage=st.sampled_from(["asleep_core", "awake", "in_bed"]),
    )
    def night(self, member: uuid.UUID, at: dt.datetime, minutes: int, stage: str) -> None:
        ended = at + dt.timedelta(minutes=minutes)
        episode = _observation(
            member, rollups.SLEEP_STAGE, at, float(minutes), ended=ended, qualifier=stage
        )
        ingest(self.conn, [episode])
        self.sent.append([episode])

    @rule(limit=st.integers(1, 5))
    def refresh_some(self, limit: int) -> None:
        rollups.refresh(self.conn, limit)

    @invariant()
    def nothing_is_lost(self) -> None:
        # Whatever is not in the rollups yet is still queued.
        queued, _ = rollups.backlog(self.conn)
        self.conn.rollback()
        assert queued >= 0

    def teardown(self) -> None:
        if not hasattr(self, "conn"):
            return
        rollups.refresh_all(self.conn)
        incremental = snapshot(self.conn)
        hourly = [
            (r["member_id"], r["code"], r["bucket"], r["n"], r["sum"], r["min"], r["max"])
            for r in incremental["rollup_hourly"]
        ]
        plain = plain_hourly(self.conn)
        assert len(hourly) == len(plain)
        for a, b in zip(hourly, plain, strict=True):
            assert a[:4] == b[:4] and math.isclose(a[4], b[4]) and a[5:] == b[5:]
        same(incremental, from_scratch(self.conn))


_CONN: list[psycopg.Connection] = []


def test_every_rollup_equals_a_recomputation_from_scratch(conn: psycopg.Connection) -> None:
    _CONN[:] = [conn]
    RollupHistory.TestCase.settings = settings(
        max_examples=25,
        stateful_step_count=12,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    RollupHistory.TestCase().runTest()
